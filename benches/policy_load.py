#!/usr/bin/env python3
"""A Postfix-shaped policy load (benches/callgrind-policy.sh): CONNECTIONS
connections, as smtpd keeps them, each asking REQUESTS requests one after
another (the next once the answer is in), every request a new message of
one recipient (a new `instance`) with Postfix 3.7's ~30 attributes, for one
tuple. The client's own cost does not matter: callgrind counts the daemon.

    benches/policy_load.py HOST:PORT [CONNECTIONS] [REQUESTS] [CLIENT]

Prints `RESULT requests=N dunno=N prepend=N defer=N other=N`.
"""
import socket
import sys
import threading

REQUEST = (
    "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
    "client_address={client}\nclient_name=mail.example.org\nclient_port=40312\n"
    "reverse_client_name=mail.example.org\nserver_address=127.0.0.1\nserver_port=25\n"
    "helo_name=mail.example.org\nsender=alice@example.org\nrecipient=bob@example.net\n"
    "recipient_count=0\nqueue_id=\ninstance={instance}\nsize=0\netrn_domain=\nstress=\n"
    "sasl_method=\nsasl_username=\nsasl_sender=\nccert_subject=\nccert_issuer=\n"
    "ccert_fingerprint=\nccert_pubkey_fingerprint=\nencryption_protocol=\n"
    "encryption_cipher=\nencryption_keysize=0\npolicy_context=\n"
    "compatibility_level=3.6\nmail_version=3.7.10\n\n"
)


def connection(host, port, c, requests, client, counts, lock):
    s = socket.create_connection((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")
    mine = {"dunno": 0, "prepend": 0, "defer": 0, "other": 0}
    for r in range(requests):
        s.sendall(REQUEST.format(client=client, instance=f"{c:x}.{r:x}.0").encode())
        action = b""
        while True:
            line = f.readline()
            if not line:
                raise SystemExit("policy_load: the service closed the connection")
            if line == b"\n":
                break
            action = line
        if action.startswith(b"action=DUNNO"):
            mine["dunno"] += 1
        elif action.startswith(b"action=PREPEND"):
            mine["prepend"] += 1
        elif action.startswith(b"action=DEFER"):
            mine["defer"] += 1
        else:
            mine["other"] += 1
    s.close()
    with lock:
        for k, v in mine.items():
            counts[k] += v


def main():
    target = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:10023"
    connections = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    requests = int(sys.argv[3]) if len(sys.argv) > 3 else 2500
    client = sys.argv[4] if len(sys.argv) > 4 else "192.0.2.7"
    host, port = target.rsplit(":", 1)
    counts = {"dunno": 0, "prepend": 0, "defer": 0, "other": 0}
    lock = threading.Lock()
    threads = [
        threading.Thread(target=connection, args=(host, int(port), c, requests, client, counts, lock))
        for c in range(connections)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = sum(counts.values())
    print(f"RESULT requests={total} dunno={counts['dunno']} prepend={counts['prepend']} "
          f"defer={counts['defer']} other={counts['other']}")


main()
