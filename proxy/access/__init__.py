"""The trusted contact's side: the only code that decrypts held items."""
