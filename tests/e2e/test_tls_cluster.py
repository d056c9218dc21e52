"""The cluster suite's serving, ASK and failover tests again on a Redis
Cluster that speaks only TLS (clients, cluster bus, replication): every
node connection the worker opens, those after MOVED and ASK included, is
TLS with the certificate checked against 127.0.0.1."""
import unittest

import test_cluster


class TLSServe(test_cluster.Serve):
    tls = True


class TLSMigrate(test_cluster.Migrate):
    tls = True


class TLSFailover(test_cluster.Failover):
    tls = True


if __name__ == "__main__":
    unittest.main()
