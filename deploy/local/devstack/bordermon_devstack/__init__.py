"""bordermon's local dev stack: Kafka, Redis and Prometheus on loopback, without Docker.

A development tool kept out of the bordermon package and image (it installs Redis and
Prometheus with apt-get and fetches Kafka's jars with Maven): `source deploy/local/bootstrap.sh`
installs it, editable, beside bordermon, and it adds the `bordermon stack` command through the
`bordermon.commands` entry point (see cli.py). The modules:

- stack.py: the services, `up`, `down`, `status` (the library the tests and the chaos suite use);
- secure_stack.py: the `--secure` variant (TLS, SCRAM, ACLs), with bordermon.admin.credentials;
- stack_base.py: what both share (errors, probes, apt installs);
- cli.py: the command.
"""
