"""The IMAP channel: watching hosted mailboxes and removing held mail after sealing it."""
