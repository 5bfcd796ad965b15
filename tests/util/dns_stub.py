"""A DNS server on 127.0.0.1 for tests (PyPI dnslib's server and zone resolver): answers from the
zone file given as the first argument, over UDP and TCP on one port, and prints "PORT n" once it
listens. It stops when its standard input closes (the test that started it went away)."""
import sys
import time

from dnslib.server import DNSLogger, DNSServer
from dnslib.zoneresolver import ZoneResolver


def main():
    with open(sys.argv[1]) as f:
        resolver = ZoneResolver(f.read(), glob=False)
    # Quiet: dnslib logs every query to stdout, which nobody reads after the port line.
    quiet = DNSLogger("-recv,-send,-request,-reply,-truncated,-error,-data", prefix=False)
    udp = None
    for _ in range(20):
        udp = DNSServer(resolver, port=0, address="127.0.0.1", tcp=False, logger=quiet)
        port = udp.server.server_address[1]
        try:
            tcp = DNSServer(resolver, port=port, address="127.0.0.1", tcp=True, logger=quiet)
            break
        except OSError:
            udp.server.server_close()
    else:
        sys.exit("no port free for both UDP and TCP")
    udp.start_thread()
    tcp.start_thread()
    print(f"PORT {port}", flush=True)
    sys.stdin.read()
    udp.stop()
    tcp.stop()


if __name__ == "__main__":
    main()
