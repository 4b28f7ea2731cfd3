"""The terminal's own notifications: the bell, and a desktop notification through an escape
sequence — OSC 9 (iTerm2, WezTerm, Windows Terminal, ghostty, kitty) or OSC 777 (VTE terminals
such as GNOME Terminal, foot, urxvt). Inside tmux the sequence is wrapped so it reaches the outer
terminal. Which one is sent: `$RUNKON_NOTIFY` (`osc9`, `osc777`, `bell`, `off`), else guessed from
the terminal's environment, else the bell alone (an unknown escape would print garbage on some
terminals; the bell never does).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TextIO

from runkon_flow.events import EngineEventData

__all__ = ["NOTIFY_ENV", "TerminalAlerts", "alert_sequence", "alert_style", "notify_setting_problem"]

NOTIFY_ENV = "RUNKON_NOTIFY"
NOTIFY_STYLES = ("osc9", "osc777", "bell", "off")
# C0, DEL and C1 (U+009C is a string terminator and U+009B a CSI for terminals that read C1 controls
# in UTF-8, VTE among them: a gate prompt holding one could end the OSC and write its own escapes).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f;\u2028\u2029]")


def alert_style(env: Mapping[str, str] | None = None) -> str:
    """`osc9`, `osc777`, `bell` or `off` for the terminal described by `env`."""
    env = os.environ if env is None else env
    chosen = env.get(NOTIFY_ENV, "").strip().lower()
    if chosen in NOTIFY_STYLES:
        return chosen
    program = env.get("TERM_PROGRAM", "")
    term = env.get("TERM", "")
    if program in ("iTerm.app", "WezTerm", "ghostty") or env.get("WT_SESSION") or term == "xterm-kitty":
        return "osc9"
    if env.get("VTE_VERSION") or term.startswith(("rxvt", "foot")):
        return "osc777"
    return "bell"


def notify_setting_problem(env: Mapping[str, str] | None = None) -> str | None:
    """What is wrong with `$RUNKON_NOTIFY` in `env`, if it is set to no style `alert_style` knows
    (it is then ignored and the style guessed): said once by each client at start."""
    env = os.environ if env is None else env
    value = env.get(NOTIFY_ENV, "")
    if not value.strip() or value.strip().lower() in NOTIFY_STYLES:
        return None
    return (
        f"{NOTIFY_ENV}={value!r} is not a notification style; it is ignored and the style guessed "
        f"from the terminal (use {', '.join(NOTIFY_STYLES[:-1])} or {NOTIFY_STYLES[-1]})"
    )


def alert_sequence(title: str, body: str, env: Mapping[str, str] | None = None) -> str:
    """What to write to the terminal: a bell plus, where supported, a desktop notification."""
    env = os.environ if env is None else env
    style = alert_style(env)
    if style == "off":
        return ""
    title, body = _CONTROL.sub(" ", title)[:80], _CONTROL.sub(" ", body)[:200]
    if style == "osc9":
        seq = f"\x1b]9;{title}: {body}\x07"
    elif style == "osc777":
        seq = f"\x1b]777;notify;{title};{body}\x07"
    else:
        return "\a"
    if env.get("TMUX"):  # tmux passes a DCS-wrapped sequence through to the outer terminal
        seq = "\x1bPtmux;" + seq.replace("\x1b", "\x1b\x1b") + "\x1b\\"
    return "\a" + seq


class TerminalAlerts:
    """For a CLI run on a terminal: alert when a gate starts waiting and when the run ends. Fed the
    run's events on the thread that prints them."""

    def __init__(self, stream: TextIO, run_id: str, env: Mapping[str, str] | None = None) -> None:
        self._stream = stream
        self._run_id = run_id
        self._env = os.environ if env is None else env
        self._workflow = ""

    def feed(self, data: EngineEventData) -> None:
        ev = data.event
        kind = ev.type
        if kind in ("RunStarted", "RunResumed") and data.run_id == self._run_id:
            self._workflow = ev.workflow_name
        elif kind == "GateWaiting":
            self.alert(f"gate {ev.gate_name} waits", ev.prompt or "approve or reject it")
        elif kind in ("RunCompleted", "RunCancelled") and data.run_id == self._run_id:
            if kind == "RunCancelled":
                outcome = "cancelled"
            else:
                outcome = "completed" if ev.succeeded else "failed"
            self.alert(f"run {outcome}", f"{self._workflow or 'workflow'} {self._run_id} {outcome}")

    def alert(self, title: str, body: str) -> None:
        text = alert_sequence(f"runkon: {title}", body, self._env)
        if not text:
            return
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):
            pass  # a closed terminal is no reason to disturb the run
