"""The local cluster: every engine Tessera runs on at scale, started and stopped on 127.0.0.1."""
