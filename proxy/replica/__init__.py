"""Off-site replication of the sealed log: C2SP tlog-tiles in S3 with Object Lock (in progress)."""
