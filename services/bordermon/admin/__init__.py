"""Setting up the cluster a deployment runs on, as code: the topics (`topics`, from
topics/topics.toml) and their ACLs (`acls`, from topics/acls.toml), Kafka users (`users`), and
the credentials of a secure deployment (`credentials`: passwords, SCRAM hashes, the Redis ACL).
The commands over them are `bordermon topics` and `bordermon users`."""
