#!/usr/bin/env python3
"""A stand-in for an LLM command-line agent (no network, no keys).

Reads the prompt on stdin like a real agent CLI would, "thinks" for a moment, prints a short
answer derived from the prompt, and ends with the FLOW_OUTPUT block the engine parses.
Used by agents whose front matter says `runtime: command`.
"""

import argparse
import json
import os
import random
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", default="writer")
    parser.add_argument("--markers", default="", help="comma-separated markers to emit")
    parser.add_argument("--think", type=float, default=0.6, help="seconds to pretend to think")
    args = parser.parse_args()
    prompt = sys.stdin.read()
    speed = float(os.environ.get("RUNKON_SAMPLE_SPEED", "1") or 0)
    task = next((line.strip() for line in prompt.splitlines() if line.strip()), "(empty prompt)")
    model, agent = os.environ.get("RUNKON_MODEL", "default"), os.environ.get("RUNKON_AGENT")
    print(f"[{args.role}] model={model} agent={agent}")
    print(f"[{args.role}] task: {task}")
    for step in ("reading the context", "drafting", "checking the result"):
        time.sleep(random.uniform(0.1, args.think / 2) * speed)
        print(f"[{args.role}] {step} ...", flush=True)
    words = len(prompt.split())
    markers = [m for m in args.markers.split(",") if m]
    block = {"markers": markers, "context": f"{args.role} handled a {words}-word prompt", "role": args.role}
    print("<<<FLOW_OUTPUT>>>")
    print(json.dumps(block))
    print("<<<END_FLOW_OUTPUT>>>")
    return 0


if __name__ == "__main__":
    sys.exit(main())
