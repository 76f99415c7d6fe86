#!/usr/bin/env python3
"""Independent MLLP client for vellum's tests: python-hl7 (PyPI `hl7`)
frames and sends each message with hl7.client.MLLPClient, parses the ACK
with hl7.parse and prints one JSON object per message.

usage: mllp_send.py HOST PORT FILE [FILE ...]
Files hold one message each; LF/CRLF line ends become the HL7 segment
separator CR. Nothing from the messages is printed but what the ACK echoes.
"""
import json
import sys

import hl7
from hl7.client import MLLPClient


def field(msg, seg, n):
    try:
        return str(msg.segment(seg)[n])
    except (KeyError, IndexError):
        return ""


def main():
    host, port, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    with MLLPClient(host, port) as client:
        for path in files:
            with open(path, "r", encoding="utf-8") as f:
                text = f.read().strip().replace("\r\n", "\r").replace("\n", "\r") + "\r"
            try:
                sent = hl7.parse(text)
                control_id = field(sent, "MSH", 10)
            except Exception:  # not HL7 at all (e.g. no MSH): still sent
                control_id = ""
            reply = client.send_message(text)
            # The reply is one MLLP block: <VT> ack <FS><CR>.
            body = reply.strip(b"\x0b\x1c\r").decode("utf-8")
            ack = hl7.parse(body)
            print(json.dumps({
                "file": path.rsplit("/", 1)[-1],
                "control_id": control_id,
                "ack_sending_app": field(ack, "MSH", 3),
                "ack_receiving_app": field(ack, "MSH", 5),
                "ack_type": field(ack, "MSH", 9),
                "ack_version": field(ack, "MSH", 12),
                "msa1": field(ack, "MSA", 1),
                "msa2": field(ack, "MSA", 2),
                "err2": field(ack, "ERR", 2),
                "err3": field(ack, "ERR", 3),
                "event_id": field(ack, "ZVL", 1),
                "seq": field(ack, "ZVL", 2),
                "created": field(ack, "ZVL", 4),
            }), flush=True)


if __name__ == "__main__":
    main()
