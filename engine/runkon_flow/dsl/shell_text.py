"""Where each `{{key}}` of a script's `run` text sits in shell syntax, and how to insert its value.

Values are never spliced into shell text. Each placeholder is replaced by a *reference* to an
environment variable that carries the value (`RUNKON_V1`, `RUNKON_V2`, … one per distinct key), and
the reference is written to suit the quoting the author put around the placeholder:

* outside quotes (also inside `$(…)` and backticks): `"${RUNKON_V1}"` — one word, no globbing;
* inside double quotes or an unquoted here-document: `${RUNKON_V1}`;
* inside single quotes: `'"${RUNKON_V1}"'` — close the quote, expand, reopen.

The shell expands a parameter exactly once and never parses its value as code, so whatever the
value holds (`$(…)`, backticks, quotes, newlines) it arrives byte for byte. Places where no such
reference is both safe and faithful are refused (see `PlaceholderUse.problem`): inside `${…}`
(the word there may be re-expanded), inside arithmetic `$((…))` (bash evaluates a value there as an
expression, and array subscripts in it run commands), inside `$'…'`, in a here-document whose
delimiter is quoted, and straight after a backslash — and in a word that a command given in `run`
parses as shell code again: the script of `sh -c`/`bash -c` (through `env`, `xargs`, `timeout` …)
and the arguments of `eval` (the outer shell inserts the value faithfully; the inner one would run
it), the command line of `su -c`/`script -c`, what a shell in a container runs (`docker exec CTR
sh -c`, `kubectl exec POD -- …`), the program of an interpreter (`python3 -c`, `awk`, `sed`, `jq`
…), the remote command of `ssh`, and a here-document, here-string or pipe a shell or an
interpreter reads its program from (`printf '%s\n' {{v}} | sh`). There
the author passes the value through `env` and writes `"$VALUE"` in the inner script (or reads the
variable in the program).

The scan is one left-to-right pass (linear in the text), with the same placeholder syntax as
`dsl.templating`: the key is the text up to the next `}}`; an unterminated `{{` is plain text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

__all__ = [
    "PlaceholderUse",
    "ShellTemplateError",
    "code_arguments",
    "option_problem",
    "option_value",
    "reads_as_option",
    "refused_input",
    "render_shell_command",
    "runs_shell",
    "scan_placeholders",
    "stdin_program",
    "the_value_of",
]

#: The environment variable names carrying values start with this.
VALUE_ENV_PREFIX = "RUNKON_V"

PLAIN, DOUBLE, SINGLE, HEREDOC = "plain", "double", "single", "heredoc"

_INSERT = {
    PLAIN: '"${{{0}}}"',
    DOUBLE: "${{{0}}}",
    HEREDOC: "${{{0}}}",
    SINGLE: "'\"${{{0}}}\"'",
}


_DELIM_END = re.compile(r"[\s;&|<>()]")


@dataclass(frozen=True)
class PlaceholderUse:
    """One `{{key}}` in `run`: where it is (offsets in the text, 1-based line of the text) and the
    quoting around it. `problem`/`hint` are set where no safe insertion exists; `redundant_quotes`
    where the author quoted it although values are quoted for them."""

    key: str
    start: int
    end: int
    line: int
    context: str
    problem: str | None = None
    hint: str | None = None
    redundant_quotes: bool = False
    #: The command whose arguments this placeholder starts one of (before any `--`): a value
    #: beginning with `-` would be read as its option (`reads_as_option`).
    option_of: str | None = None


@dataclass(frozen=True)
class Wording:
    """How refusals word the text whose placeholders are checked: `where` it is (after a
    placeholder's place: "in `run`"), what it is called in a hint (`text`), how its author passes
    a value through the environment instead (`env`, formatted with `name` and `key`), and whether
    a shell runs it (`shell`: a hint may then use `"$VALUE"`, pipes; else the words are a
    program's arguments, as in an agent's `command` list)."""

    where: str
    text: str
    env: str
    shell: bool = True

    def pass_env(self, key: str, name: str = "VALUE") -> str:
        return self.env.format(name=name, key=f"{{{{{key}}}}}")


#: A script step's `run`: its `env` is a table in the `.wf` file.
SCRIPT = Wording("in `run`", "`run`", 'pass it through `env` (env = {{ {name} = "{key}" }})')
#: An agent's shell script (`command: [sh, -c, SCRIPT]`): its `env` is a mapping in the agent
#: file's front matter.
AGENT_SCRIPT = Wording(
    "in its shell script", "the script", 'declare it in the agent\'s `env` (env: {{ {name}: "{key}" }})'
)
#: An argument of an agent's `command` list, which no shell reads.
AGENT_ARGUMENT = replace(AGENT_SCRIPT, where="in its `command`", text="its `command`", shell=False)


class ShellTemplateError(ValueError):
    """A placeholder in `run` sits where no value can be inserted safely."""

    def __init__(self, use: PlaceholderUse) -> None:
        self.use = use
        super().__init__(f"{use.problem} ({use.hint})" if use.hint else str(use.problem))


class _Frame:
    __slots__ = ("kind", "only_placeholders", "uses")

    def __init__(self, kind: str) -> None:
        self.kind = kind  # "top", "cmd", "paren", "tick", "dq", "param", "arith"
        self.only_placeholders = True
        self.uses: list[int] = []


def _shown(key: str) -> str:
    return f"`{{{{{key}}}}}`"


class _Scanner:
    """One pass over `run`; `uses` collects the placeholders in text order."""

    def __init__(self, text: str, wording: Wording = SCRIPT) -> None:
        self.text = text
        self.wording = wording
        self.n = len(text)
        self.uses: list[PlaceholderUse] = []
        self.stack: list[_Frame] = [_Frame("top")]
        self.pending: list[tuple[str, bool, bool]] = []  # here-documents: (delimiter, quoted, strip tabs)

    def add(
        self,
        key: str,
        start: int,
        end: int,
        context: str,
        problem: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.uses.append(PlaceholderUse(key, start, end, 0, context, problem, hint))

    def placeholder_end(self, i: int) -> int:
        """If a placeholder starts at `i`, its end offset, else -1."""
        if not self.text.startswith("{{", i):
            return -1
        close = self.text.find("}}", i + 2)
        return -1 if close < 0 else close + 2

    def run(self) -> list[PlaceholderUse]:
        text, n = self.text, self.n
        i = 0
        word_start = True
        while i < n:
            c = text[i]
            frame = self.stack[-1]
            kind = frame.kind
            if c == "{":
                end = self.placeholder_end(i)
                if end >= 0:
                    self.placeholder(i, end, frame)
                    i = end
                    word_start = False
                    continue
            if kind == "dq":
                i = self.in_double(i, frame)
            elif kind in ("param", "arith"):
                i = self.in_expansion(i, kind)
            else:
                i, word_start = self.in_command(i, kind, word_start)
        self.number_lines()
        return self.uses

    def placeholder(self, i: int, end: int, frame: _Frame) -> None:
        text = self.text
        key = text[i + 2 : end - 2]
        shown = _shown(key)
        where, env = (
            self.wording.where,
            f'{self.wording.pass_env(key)} and write "$VALUE" in {self.wording.text}',
        )
        if i > 0 and text[i - 1] == "\\" and _odd_backslashes(text, i - 1):
            self.add(
                key,
                i,
                end,
                PLAIN,
                f"{shown} follows a backslash {where}",
                "remove the backslash: values are quoted for you",
            )
        elif frame.kind == "param":
            self.add(
                key,
                i,
                end,
                PLAIN,
                f"{shown} is inside a `${{…}}` expansion {where}, where a value cannot be inserted safely",
                env,
            )
        elif frame.kind == "arith":
            self.add(
                key,
                i,
                end,
                PLAIN,
                f"{shown} is inside an arithmetic expansion `$((…))` {where}, "
                "where a value would be evaluated as an expression",
                env,
            )
        elif frame.kind == "dq":
            frame.uses.append(len(self.uses))
            self.add(key, i, end, DOUBLE)
        else:
            self.add(key, i, end, PLAIN)

    def in_double(self, i: int, frame: _Frame) -> int:
        c = self.text[i]
        if c == '"':
            self.stack.pop()
            if frame.only_placeholders:
                for index in frame.uses:
                    self.uses[index] = replace(self.uses[index], redundant_quotes=True)
            return i + 1
        frame.only_placeholders = False
        if c == "\\":
            return self.after_backslash(i)
        return self.expansion_or_step(i)

    def in_expansion(self, i: int, kind: str) -> int:
        text = self.text
        c = text[i]
        if c == "\\":
            return self.after_backslash(i)
        if kind == "param" and c == "}":
            self.stack.pop()
            return i + 1
        if kind == "arith" and text.startswith("))", i):
            self.stack.pop()
            return i + 2
        if c == "'" and kind == "param":
            return self.single_quoted(i)
        if c == '"':
            self.stack.append(_Frame("dq"))
            return i + 1
        if c == "(":
            self.stack.append(_Frame("paren"))
            return i + 1
        return self.expansion_or_step(i)

    def in_command(self, i: int, kind: str, word_start: bool) -> tuple[int, bool]:
        """Top level, `$(…)`, `(…)` and backticks."""
        text = self.text
        c = text[i]
        if c == "\\":
            return self.after_backslash(i), False
        if c == "'":
            return self.single_quoted(i), False
        if c == '"':
            self.stack.append(_Frame("dq"))
            return i + 1, False
        if c == "#" and word_start:
            return self.comment(i), True
        if c == "(":
            self.stack.append(_Frame("paren"))
            return i + 1, True
        if c == ")" and kind in ("cmd", "paren"):
            self.stack.pop()
            return i + 1, False
        if c == "<" and text.startswith("<<<", i):  # a here-string: its word is an ordinary one
            return i + 3, True
        if c == "<" and text.startswith("<<", i):
            return self.heredoc_operator(i + 2), True
        if c == "\n" and self.pending:
            return self.heredoc_bodies(i + 1), True
        if c == "$" and text.startswith("$'", i):
            return self.ansi_quoted(i + 2), False
        if c in "$`":
            return self.expansion_or_step(i), c == "`"
        return i + 1, c in " \t\n;&|"

    def after_backslash(self, i: int) -> int:
        """Skip the escaped character, unless a placeholder starts there (it is refused then)."""
        return i + 1 if self.placeholder_end(i + 1) >= 0 else i + 2

    def expansion_or_step(self, i: int) -> int:
        """At `$` or a backtick: open `$((`, `$(`, `${` or a backtick pair; else step one character."""
        text, stack = self.text, self.stack
        c = text[i]
        if c == "`":
            if stack[-1].kind == "tick":
                stack.pop()
            else:
                stack.append(_Frame("tick"))
            return i + 1
        if c != "$":
            return i + 1
        if text.startswith("$((", i):
            stack.append(_Frame("arith"))
            return i + 3
        if text.startswith("$(", i):
            stack.append(_Frame("cmd"))
            return i + 2
        if text.startswith("${", i) and not text.startswith("${{", i):
            stack.append(_Frame("param"))
            return i + 2
        return i + 1

    def single_quoted(self, i: int) -> int:
        """From an opening `'`: placeholders inside are single-quoted; returns the end offset."""
        text, n = self.text, self.n
        j = i + 1
        first = len(self.uses)
        other_text = False
        while j < n:
            c = text[j]
            if c == "'":
                if not other_text:
                    for k in range(first, len(self.uses)):
                        self.uses[k] = replace(self.uses[k], redundant_quotes=True)
                return j + 1
            if c == "{":
                end = self.placeholder_end(j)
                if end >= 0:
                    self.add(text[j + 2 : end - 2], j, end, SINGLE)
                    j = end
                    continue
            other_text = True
            j += 1
        return n

    def ansi_quoted(self, i: int) -> int:
        """Inside `$'…'` (from after the quote): escapes are processed, so placeholders are refused."""
        text, n = self.text, self.n
        while i < n:
            c = text[i]
            if c == "\\":
                i = self.after_backslash(i)
                continue
            if c == "'":
                return i + 1
            if c == "{":
                end = self.placeholder_end(i)
                if end >= 0:
                    key = text[i + 2 : end - 2]
                    self.add(
                        key,
                        i,
                        end,
                        SINGLE,
                        f"{_shown(key)} is inside `$'…'` quotes {self.wording.where}",
                        "remove the quotes: values are quoted for you",
                    )
                    i = end
                    continue
            i += 1
        return n

    def comment(self, i: int) -> int:
        """A `#` comment: its placeholders change nothing the shell runs (kept as plain ones)."""
        text = self.text
        while True:
            stop = text.find("\n", i)
            stop = self.n if stop < 0 else stop
            j = text.find("{{", i, stop)
            if j < 0:
                return stop
            end = self.placeholder_end(j)
            if end < 0:
                return stop
            self.add(text[j + 2 : end - 2], j, end, PLAIN)
            i = end

    def heredoc_operator(self, i: int) -> int:
        """After `<<`: read `-` and the delimiter word; its body starts after the next newline."""
        text, n = self.text, self.n
        strip = i < n and text[i] == "-"
        if strip:
            i += 1
        while i < n and text[i] in " \t":
            i += 1
        start = i
        quoted = False
        word: list[str] = []
        while i < n and not _DELIM_END.match(text[i]):
            c = text[i]
            if c in "'\"":
                quoted = True
                close = text.find(c, i + 1)
                close = n if close < 0 else close
                word.append(text[i + 1 : close])
                i = close + 1
                continue
            if c == "\\":
                quoted = True
                word.append(text[i + 1 : i + 2])
                i += 2
                continue
            word.append(c)
            i += 1
        j = text.find("{{", start, i)
        while j >= 0:  # a value cannot be a here-document's delimiter
            end = self.placeholder_end(j)
            if end < 0:
                break
            self.delimiter_use(j, end)
            i = max(i, end)
            j = text.find("{{", end, i)
        if i > start:
            self.pending.append(("".join(word), quoted, strip))
        return i

    def heredoc_bodies(self, i: int) -> int:
        """The here-document bodies starting at `i`, one after another; returns where they end.
        A placeholder may run past the end of its line (its key is all text up to the next `}}`)."""
        text, n = self.text, self.n
        for delimiter, quoted, strip in self.pending:
            while i < n:
                stop = text.find("\n", i)
                stop = n if stop < 0 else stop
                line = text[i:stop]
                if (line.lstrip("\t") if strip else line) == delimiter:
                    # A delimiter with a placeholder was refused at its `<<`; the line that ends
                    # the body holds the same placeholder text, and it is found here too.
                    self.delimiter_placeholders(i, stop)
                    i = stop + 1
                    break
                j = text.find("{{", i, stop)
                while j >= 0:
                    end = self.placeholder_end(j)
                    if end < 0:
                        break
                    self.heredoc_placeholder(i, j, end, quoted)
                    if end > stop:
                        stop = text.find("\n", end)
                        stop = n if stop < 0 else stop
                    j = text.find("{{", end, stop)
                i = stop + 1
        self.pending.clear()
        return min(i, n)

    def delimiter_placeholders(self, start: int, stop: int) -> None:
        """Placeholders written in a here-document's delimiter (refused: a value cannot be one)."""
        text = self.text
        j = text.find("{{", start, stop)
        while j >= 0:
            end = self.placeholder_end(j)
            if end < 0:
                return
            self.delimiter_use(j, end)
            j = text.find("{{", end, stop)

    def delimiter_use(self, j: int, end: int) -> None:
        key = self.text[j + 2 : end - 2]
        self.add(
            key,
            j,
            end,
            PLAIN,
            f"{_shown(key)} is part of a here-document delimiter {self.wording.where}",
            "write the delimiter as plain text (<<EOF)",
        )

    def heredoc_placeholder(self, line_start: int, j: int, end: int, quoted: bool) -> None:
        text = self.text
        key = text[j + 2 : end - 2]
        shown = _shown(key)
        if quoted:
            self.add(
                key,
                j,
                end,
                HEREDOC,
                f"{shown} is in a here-document with a quoted delimiter {self.wording.where}, "
                "where the shell expands nothing",
                "write the delimiter unquoted (<<EOF) or pass the value through `env`",
            )
        elif j > line_start and text[j - 1] == "\\" and _odd_backslashes(text, j - 1):
            self.add(
                key,
                j,
                end,
                HEREDOC,
                f"{shown} follows a backslash {self.wording.where}",
                "remove the backslash: values are quoted for you",
            )
        else:
            self.add(key, j, end, HEREDOC)

    def number_lines(self) -> None:
        """1-based line of each placeholder within `run`, in one pass."""
        self.uses.sort(key=lambda u: u.start)
        line, pos = 1, 0
        for k, use in enumerate(self.uses):
            line += self.text.count("\n", pos, use.start)
            pos = use.start
            self.uses[k] = replace(use, line=line)


def scan_placeholders(text: str, wording: Wording = SCRIPT) -> list[PlaceholderUse]:
    """Every placeholder of `text` with its shell context, in text order (refusals worded for
    where `text` is: `wording`)."""
    if "{{" not in text:
        return []
    return list(_scanned(text, wording))


@functools.lru_cache(maxsize=512)
def _scanned(text: str, wording: Wording) -> tuple[PlaceholderUse, ...]:
    """`scan_placeholders`, once per text: a script step's `run` is scanned at every execution
    (each foreach item's, twice: to render it and to check its values), ~0.2 ms a time for a
    one-line script, the same answer each time."""
    return tuple(_scan(text, wording))


def _scan(text: str, wording: Wording) -> list[PlaceholderUse]:
    uses = _Scanner(text, wording).run()
    words = _Words(text)
    try:
        commands = words.commands()
    except RecursionError:  # hundreds of nested `$(…)`: refused rather than left unchecked
        return [
            replace(
                use,
                problem=use.problem
                or f"{_shown(use.key)} is in {wording.text} text nested too deeply to be checked",
                hint=use.hint or "nest fewer `$(…)`",
            )
            for use in uses
        ]
    spans = _code_word_spans(commands) + _piped_program_spans(commands, words.pipes)
    if spans:
        uses = [_in_code_word(use, spans, wording) for use in uses]
    options = _option_positions(text, commands)
    if options:
        uses = [replace(use, option_of=options[use.start]) if use.start in options else use for use in uses]
    return uses


#: Commands whose arguments are no options (or whose options a value cannot spell: `echo`'s are
#: checked by `reads_as_option`): shell keywords, `test`, and `printf` after its format.
_NO_OPTIONS = frozenset({"for", "case", "select", "in", "[[", "[", "test", ":", "true", "false", "export"})


def _option_positions(text: str, commands: list[_Command]) -> dict[int, str]:
    """Placeholders that start a word among a command's arguments (or a wrapper's: `sudo`,
    `timeout` …), before any `--` there: a value beginning with `-` would be read as an option of
    that command. Offset → the command's name."""
    found: dict[int, str] = {}
    for words, _ in commands:
        plain = [w for w, _, _ in words]
        first = 0
        while first < len(plain) and _ASSIGNMENT.match(plain[first]):
            first += 1
        if first >= len(plain):
            continue
        k = _command_index(plain)
        k = len(plain) if k is None or k < first else k
        name = plain[k].rsplit("/", 1)[-1] if k < len(plain) else ""
        candidates = [(w, plain[first].rsplit("/", 1)[-1]) for w in words[first + 1 : k]]
        if name not in _NO_OPTIONS:
            rest = words[k + 1 :]
            if name == "printf":  # options only before the format; its arguments are data
                rest = rest[:1]
            candidates += [(w, name) for w in rest]
        for (word, start, end), command in candidates:
            if word == "--":
                break
            lead = start
            while lead < end and text[lead] in "'\"":
                lead += 1
            if text.startswith("{{", lead):
                found[lead] = command
    return found


def option_value(
    uses: list[PlaceholderUse], variables: Mapping[str, str]
) -> tuple[PlaceholderUse, str] | None:
    """The first placeholder whose value its command would read as an option, with that value."""
    for use in uses:
        value = variables.get(use.key)
        if use.option_of is not None and value is not None and reads_as_option(use.option_of, value):
            return use, value
    return None


def the_value_of(key: str, where: str = "", source: str | None = None) -> str:
    """How a step's error names the value of `{{key}}` it refused: `where` it was (` in `run``,
    ` in its command's argument 1`), then where the value came from when that is known (`input
    'key'`, `FLOW_OUTPUT field 'x' of step 's'`). Script steps and agents both say it so, and
    `refused_input` reads it back."""
    return f"the value of {{{{{key}}}}}{where}" + (f" ({source})" if source else "")


#: A step's error for a value of one of the run's inputs that it refused (`the_value_of`, then
#: why): read as an option, too big for a process, holding a NUL byte. The input is stored with
#: the run, so a resume would refuse it again: a new run with another value is what helps.
_INPUT_REFUSED = re.compile(
    r"the value of \{\{(?P<key>[^}]+)\}\}[^\n(]* \(input '(?P=key)'\) "
    r"(?:begins with '-'|is [\d,]+ bytes|contains a NUL byte)"
)


def refused_input(error: str | None) -> str | None:
    """The input whose value a step — a script's or an agent's — refused (its error, as
    `the_value_of` words it), or None for any other error: what to change in a new run (CLI hints)."""
    found = _INPUT_REFUSED.search(error or "")
    return found["key"] if found else None


def option_problem(use: PlaceholderUse, value: str, wording: Wording = SCRIPT) -> str:
    """What to say about `use`'s value, which its command would read as an option (after "the value
    of {{key}} … "), and what to do instead."""
    shown = value if len(value) <= 40 else value[:40] + "…"
    key, command = use.key, use.option_of
    return (
        f"begins with '-' ({shown!r}): `{command}` would read it as an option, not as its argument "
        f"(hint: write `--` before it, `{command} … -- {{{{{key}}}}}`, if it is an operand; attach it to "
        f"its option, `--name={{{{{key}}}}}`, if it is an option's value; if it is meant as options, "
        f"{wording.pass_env(key, 'OPTS')} and write $OPTS)"
    )


#: A negative number (`-3`, `-0.25`, `-1e6`): data to a command, unless it takes numbers as options
#: that pick whom they act on (`kill -1`: every process the user may signal).
_NEGATIVE_NUMBER = re.compile(r"-(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_NUMBERS_ARE_OPTIONS = frozenset({"kill", "pkill", "killall", "skill", "snice", "renice", "nice"})


def reads_as_option(command: str, value: str) -> bool:
    """Whether `command` would read `value`, as the start of one of its arguments, as an option:
    it begins with `-` (a lone `-` names standard input); for `echo` only its own `-n`/`-e`/`-E`.
    A negative number is taken for data (an offset, a delta: `./shift.sh {{n}}` with -3), except
    by the commands of `_NUMBERS_ARE_OPTIONS`."""
    if command == "echo":
        return re.fullmatch(r"-[neE]+", value) is not None
    if _NEGATIVE_NUMBER.fullmatch(value):
        return command in _NUMBERS_ARE_OPTIONS
    return value.startswith("-") and value != "-"


def _in_code_word(use: PlaceholderUse, spans: list[_Span], wording: Wording) -> PlaceholderUse:
    if use.problem is not None:
        return use
    for start, end, command, source in spans:
        if start <= use.start < end:
            problem, hint = code_problem(_shown(use.key), use.key, command, source, wording)
            return replace(use, problem=f"{problem}, where its value would run as code", hint=hint)
    return use


def code_problem(
    shown: str, key: str, command: str, source: str, wording: Wording = SCRIPT
) -> tuple[str, str]:
    """What to say about a placeholder in text `command` runs as code (`source`: `ARGUMENT`, or
    the here-document / here-string / pipe `command` reads its program from), and what to do
    instead, worded for where that text is (`wording`: a script step's `run`, an agent's shell
    script or `command` list). `command` may name where it runs: `docker exec … sh -c` (in a
    container)."""
    env = wording.pass_env(key)
    # a pipe needs a shell: an agent's `command` list gets one first
    piping = "" if wording.shell else 'make its command a shell script (command: [sh, -c, "…"]) and '
    outer, _, inner = command.rpartition(" … ")
    name = inner.split(" ", 1)[0]
    shell = runs_shell(inner) or name in _COMMAND_OPTIONS or name in ("xargs", ".", "source")
    if source == HEREDOC_STDIN:
        where = f"in a here-document `{command}` reads as its program {wording.where}"
    elif source == HERESTRING_STDIN:
        where = f"in a here-string `{command}` reads as its program {wording.where}"
    elif source == PIPE_STDIN:
        where = f"in what `{command}` reads from a pipe as its program {wording.where}"
    elif shell:
        where = f"in text that `{command}` runs as shell code {wording.where}"
    else:
        where = f"in the program `{command}` runs {wording.where}"
    problem = f"{shown} is {where}"
    if command.split(" ", 1)[0] == "ssh":  # the remote side sees none of our environment
        if source == ARGUMENT and name == "ssh":
            problem = f"{shown} is in the command `ssh` has the remote shell run {wording.where}"
        return problem, (
            f"{piping}send it on ssh's standard input: printf '%s\\n' {{{{{key}}}}} | ssh HOST "
            "'IFS= read -r VALUE; … \"$VALUE\"'"
        )
    use = (
        f'write "$VALUE" in the text `{inner}` runs'
        if shell
        else "read the environment variable VALUE in that program"
    )
    if outer.split(" ", 1)[0] in ("kubectl", "oc"):  # the pod's environment is not ours
        return problem, (
            f"{piping}send it on standard input: printf '%s\\n' {{{{{key}}}}} | {outer} -i POD -- sh -c "
            "'IFS= read -r VALUE; … \"$VALUE\"'"
        )
    if outer:  # a container's environment is its own: hand the variable on
        given = '-e VALUE="$VALUE"' if wording.shell else "-e VALUE"
        return problem, f"{env}, hand it to the container ({outer} {given} …) and {use}"
    if name in ("su", "runuser"):
        return problem, f"{env} and {use} (a login shell, `{name} -l`, keeps it with `-w VALUE`)"
    if source == PIPE_STDIN:
        if shell:
            piped = f"write '\"$VALUE\"' in the text piped to `{command}`"
            return problem, f"{env} and {piped}: that shell expands it as data"
        return problem, f"{env} and {use}"
    if shell:
        if source == HEREDOC_STDIN:
            inner = "quote the here-document's delimiter (<<'EOF') and write \"$VALUE\" in it"
        elif source == HERESTRING_STDIN:
            inner = 'write "$VALUE" inside single quotes in the here-string'
        else:
            inner = use
        return problem, f"{env} and {inner}: that shell expands it as data"
    if name in _AWKS:
        return problem, f'{env} and read ENVIRON["VALUE"] in the awk program'
    if name in _SEDS:
        return problem, (
            "sed cannot take a value as data: use a program that reads it from the environment, "
            f'e.g. {env} and awk with ENVIRON["VALUE"]'
        )
    if name == "jq":
        return problem, f"pass it as `--arg value {{{{{key}}}}}` and write $value in the filter"
    return problem, f"{env} and {use}"


# ------------------------------------------------------------------ commands that run shell code

#: Where a command takes code from: an argument, or its standard input (a here-document or
#: here-string given to a shell or an interpreter that reads its program there).
ARGUMENT, HEREDOC_STDIN, HERESTRING_STDIN = "argument", "here-document", "here-string"
#: ... or what the commands before a `|` write into the pipe that the command reads its program from.
PIPE_STDIN = "pipe"
#: (start, end) offsets in `run` of text a command runs as code, the command, and `ARGUMENT` /
#: `HEREDOC_STDIN` / `HERESTRING_STDIN`.
_Span = tuple[int, int, str, str]
#: A simple command as `_Words` finds it: its words (unquoted text, start, end), and the text its
#: here-documents and here-strings give it (start, end, which).
_Command = tuple[list[tuple[str, int, int]], list[tuple[int, int, str]]]

#: Programs whose `-c` argument is a shell script.
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "yash", "busybox", "fish"})
#: Shell options that take the next word as their argument (`bash -o pipefail -c …`).
_SHELL_OPTION_ARGS = frozenset({"-o", "+o", "-O", "+O", "--rcfile", "--init-file"})
#: Commands that run the rest of their words as a command: (options taking an argument, and how
#: many plain words they take before it — `timeout 30 sh -c …`).
_WRAPPERS: dict[str, tuple[frozenset[str], int]] = {
    "env": (frozenset({"-u", "--unset", "-C", "--chdir", "-S", "--split-string"}), 0),
    "exec": (frozenset({"-a"}), 0),
    "command": (frozenset(), 0),
    "builtin": (frozenset(), 0),
    "nohup": (frozenset(), 0),
    "time": (frozenset({"-f", "-o"}), 0),
    "nice": (frozenset({"-n", "--adjustment"}), 0),
    "setsid": (frozenset(), 0),
    "stdbuf": (frozenset({"-i", "-o", "-e"}), 0),
    "timeout": (frozenset({"-s", "--signal", "-k", "--kill-after"}), 1),
    "sudo": (frozenset({"-u", "-g", "-h", "-p", "-C", "-D", "-r", "-t", "-U"}), 0),
    "doas": (frozenset({"-u", "-C"}), 0),
    "xargs": (frozenset({"-a", "-d", "-E", "-e", "-I", "-i", "-L", "-l", "-n", "-P", "-s"}), 0),
    "flock": (frozenset({"-w", "-E"}), 1),
    "chronic": (frozenset(), 0),
}
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
#: Reserved words a command may follow (`if sh -c …; then …`, `while …; do …`, `! …`).
_RESERVED = frozenset({"!", "if", "then", "elif", "else", "while", "until", "do"})
#: Commands whose option (short letter, long names) takes a command line that a shell runs
#: (`su -c`, `script -c`), with the options taking the next word as their argument (short letters,
#: long names); `runuser -u USER` runs the command after its options itself (as a wrapper does).
_COMMAND_OPTIONS: dict[str, tuple[str, frozenset[str], str, frozenset[str]]] = {
    "su": (
        "c",
        frozenset({"--command", "--session-command"}),
        "gGsw",
        frozenset({"--group", "--supp-group", "--shell", "--whitelist-environment"}),
    ),
    "runuser": (
        "c",
        frozenset({"--command", "--session-command"}),
        "gGswu",
        frozenset({"--group", "--supp-group", "--shell", "--whitelist-environment", "--user"}),
    ),
    "script": (
        "c",
        frozenset({"--command"}),
        "EIOBTmo",
        frozenset({"--echo", "--log-in", "--log-out", "--log-io", "--log-timing", "--logging-format"}),
    ),
    "sg": ("c", frozenset(), "", frozenset()),
}
#: Tools that run a command inside a container or a pod: the words naming the subcommand, the
#: options taking the next word as their argument, and whether the container is named before the
#: command (`docker exec CTR CMD …`; kubectl's command follows `--`). The container has its own
#: environment, so a value passed through `env` must be handed on (`docker exec -e VALUE …`).
_CONTAINER_EXEC: dict[str, tuple[tuple[str, ...], frozenset[str], bool]] = {
    name: (
        ("exec", "container exec", "compose exec", "run", "container run", "compose run"),
        frozenset(
            {"-e", "--env", "--env-file", "-u", "--user", "-w", "--workdir", "--detach-keys", "--index"}
        ),
        True,
    )
    for name in ("docker", "podman", "nerdctl")
}
_CONTAINER_EXEC["docker-compose"] = _CONTAINER_EXEC["podman-compose"] = (
    ("exec", "run"),
    frozenset({"-e", "--env", "-u", "--user", "-w", "--workdir", "--index"}),
    True,
)
_CONTAINER_EXEC["kubectl"] = _CONTAINER_EXEC["oc"] = (("exec", "run", "debug"), frozenset(), False)
#: `docker run`'s options that take no value (the others do: `-e A=1`, `--name x`, `-v a:b` …).
_RUN_FLAGS = frozenset(
    {
        "--rm",
        "--init",
        "--privileged",
        "--read-only",
        "--detach",
        "--interactive",
        "--tty",
        "--publish-all",
        "--no-healthcheck",
        "--oom-kill-disable",
        "--quiet",
        "--no-deps",
        "--service-ports",
        "--use-aliases",
        "--build",
        "--remove-orphans",
        "--sig-proxy",
    }
)
#: awk and sed run their program text: awk has system() and pipes to commands, GNU sed the `e`
#: command and the `s///e` flag (and `w FILE` writes files). jq's filter is a program too (it can
#: read the environment, `$ENV`, and any input).
_AWKS = frozenset({"awk", "gawk", "mawk", "nawk", "busybox awk"})
_SEDS = frozenset({"sed", "gsed", "busybox sed"})


def code_arguments(words: list[str]) -> list[tuple[int, int, str]]:
    """Which words of the command `words` (unquoted text) it parses as code: `(first, end,
    command)` for each run of them — the script of `sh -c SCRIPT`, every word after `eval`, the
    program of `python3 -c`, `node -e`, `perl -e`, `ruby -e`, `php -r`, of `awk`, each script of
    `sed` (`-e`, else its first operand), the filter of `jq`, the remote command of `ssh HOST …`,
    the command `watch` runs. Wrappers (`env A=1 …`, `xargs …`, `timeout 30 …`, `sudo …`) are
    looked through; so are `find`'s `-exec`."""
    i = _command_index(words)
    if i is None:
        return []
    n = len(words)
    name = words[i].rsplit("/", 1)[-1]
    if name == "busybox" and i + 1 < n and f"busybox {words[i + 1]}" in _AWKS | _SEDS:
        name = f"busybox {words[i + 1]}"
        i += 1
    if name == "eval":
        return [(i + 1, n, "eval")] if i + 1 < n else []
    if name in (".", "source"):
        return _one(_substituted_file(words[i + 1], i + 1, name)) if i + 1 < n else []
    if name in _SHELLS:
        return _one(_shell_script(words, i + 1, name))
    interpreter = _interpreter(name)
    if interpreter is not None:
        return _one(_program_text(words, i + 1, name, *interpreter))
    if name in _COMMAND_OPTIONS:
        return _command_option(words, i + 1, name)
    if name in _CONTAINER_EXEC:
        inner = _container_command(words, i + 1, name)
        if inner is None:
            return []
        j, outer, entrypoint = inner
        if entrypoint is not None:  # `docker run --entrypoint sh IMG -c …`: its words follow the image
            found = code_arguments([entrypoint, *words[j:]])
            return [(a - 1 + j, b - 1 + j, f"{outer} … {c}") for a, b, c in found if a > 0]
        return [(a + j, b + j, f"{outer} … {c}") for a, b, c in code_arguments(words[j:])]
    if name == "find":
        for j in range(i + 1, n):
            if words[j] in ("-exec", "-execdir", "-ok", "-okdir"):
                return [(a + j + 1, b + j + 1, c) for a, b, c in code_arguments(words[j + 1 :])]
        return []
    if name in _AWKS:
        return _awk_program(words, i + 1, name)
    if name in _SEDS:
        return _sed_scripts(words, i + 1, name)
    if name == "jq":
        return _one(_first_operand(words, i + 1, name, _JQ_OPTION_ARGS))
    if name == "ssh":
        return _ssh_command(words, i + 1)
    if name == "watch":
        return _watch_command(words, i + 1)
    return []


def _command_option(words: list[str], i: int, name: str) -> list[tuple[int, int, str]]:
    """The command line given to `su -c`, `runuser -c`, `script -c`, `sg GROUP -c` (anywhere among
    their arguments, before `--`), or the command `runuser -u USER` runs after its options. The
    words after `su USER --` (runuser's too) are the arguments of the user's shell: its `-c`
    takes a command line as well (`su deploy -- -c '…'`)."""
    letter, long_options, short_args, long_args = _COMMAND_OPTIONS[name]
    n = len(words)
    as_user = False
    user = False  # su's USER operand was given
    while i < n:
        word = words[i]
        if word == "--":
            i += 1
            if name in ("su", "runuser") and not as_user:
                i += 0 if user else 1  # `su -- USER …`
                return _one(_shell_script(words, i, f"{name} --")) if i < n else []
            break
        option, equals, _ = word.partition("=")
        if option in long_options:
            if equals:
                return [(i, i + 1, f"{name} {option}")]
            return [(i + 1, i + 2, f"{name} {option}")] if i + 1 < n else []
        if word.startswith("--"):
            as_user = as_user or option == "--user"
            i += 1 if equals or option not in long_args else 2
            continue
        if len(word) > 1 and word[0] == "-":
            step = 1
            for k, c in enumerate(word[1:], 1):
                if c == letter:
                    attached = k + 1 < len(word)
                    if not attached and i + 1 >= n:
                        return []
                    return [_option_argument(i, attached, f"{name} -{letter}")]
                if c in short_args:
                    as_user = as_user or c == "u"
                    step = 1 if k + 1 < len(word) else 2
                    break
            i += step
            continue
        if as_user:  # `runuser -u USER CMD …`: the command, run as it is
            return [(a + i, b + i, c) for a, b, c in code_arguments(words[i:])]
        user = user or word != "-"  # `su - USER`: `-` is `--login`
        i += 1
    if as_user and i < n:
        return [(a + i, b + i, c) for a, b, c in code_arguments(words[i:])]
    return []


def _container_command(words: list[str], i: int, name: str) -> tuple[int, str, str | None] | None:
    """Where the command that `docker exec [OPTIONS] CONTAINER …` (podman, nerdctl, `docker compose
    exec`, `kubectl exec POD -- …`) runs in the container starts, `docker exec` (the label), and
    the program `docker run --entrypoint PROGRAM` gives (the words after the image are then its
    arguments), else None."""
    subcommands, with_argument, container_first = _CONTAINER_EXEC[name]
    n = len(words)
    rest = " ".join(words[i : i + 2])
    sub = next((s for s in subcommands if f"{rest} ".startswith(f"{s} ")), None)
    if sub is None and name in ("kubectl", "oc"):  # global options before it: `kubectl -n ns exec`
        j = next((k for k in range(i, n) if words[k] in subcommands), None)
        if j is None:
            return None
        i, sub = j, words[j]
    if sub is None:
        return None
    runs_image = sub.endswith("run")  # `docker run [OPTIONS] IMAGE CMD …`: most options take a value
    i += len(sub.split())
    label = f"{name} {sub}"
    if not container_first:  # the command follows `--`
        j = next((k for k in range(i, n) if words[k] == "--"), None)
        return (j + 1, label, None) if j is not None and j + 1 < n else None
    entrypoint: str | None = None
    while i < n:
        word = words[i]
        if word == "--":
            i += 1
            continue
        if len(word) > 1 and word[0] == "-":
            option, equals, value = word.partition("=")
            if runs_image and option == "--entrypoint":
                entrypoint = value if equals else words[i + 1] if i + 1 < n else None
            if runs_image:
                flag = (
                    word in _RUN_FLAGS or "=" in word or (word[1] != "-" and set(word[1:]) <= set("ditPqT"))
                )
                i += 1 if flag else 2
            else:
                i += 2 if word in with_argument else 1
            continue
        break
    if entrypoint:  # `--entrypoint ''` resets it: the image's command runs
        return (i + 1, label, entrypoint) if i < n else None
    return (i + 1, label, None) if i + 1 < n else None  # past the container (the image)


def _one(found: tuple[int, int, str] | None) -> list[tuple[int, int, str]]:
    return [] if found is None else [found]


def _command_index(words: list[str], i: int = 0) -> int | None:
    """The index of the command `words` runs, past variable assignments and wrappers."""
    n = len(words)
    while i < n and (_ASSIGNMENT.match(words[i]) or words[i] in _RESERVED):
        i += 1
    while i < n:
        name = words[i].rsplit("/", 1)[-1]
        wrapper = _WRAPPERS.get(name)
        if wrapper is None:
            return i
        with_argument, plain = wrapper
        i += 1
        while i < n and (words[i].startswith("-") or (name == "env" and _ASSIGNMENT.match(words[i]))):
            if words[i] == "--":
                i += 1
                break
            i += 2 if words[i] in with_argument else 1
        i += plain
    return None


def stdin_program(words: list[str]) -> str | None:
    """The command, if `words` is a shell or an interpreter that reads its program from its
    standard input (`sh`, `bash -s`, `python3`, `python3 -`, `node`, `perl` …: no script named)."""
    i = _command_index(words)
    if i is None:
        return None
    name = words[i].rsplit("/", 1)[-1]
    rest = words[i + 1 :]
    if name == "ssh":
        return _ssh_stdin_program(words, i + 1)
    if name in _CONTAINER_EXEC:  # `… | docker exec -i CTR sh`: the shell in the container reads it
        inner = _container_command(words, i + 1, name)
        if inner is None:
            return None
        j, outer, entrypoint = inner
        command = stdin_program(words[j:] if entrypoint is None else [entrypoint, *words[j:]])
        return None if command is None else f"{outer} … {command}"
    if name in _SHELLS:
        if name == "busybox":
            if not rest or rest[0] not in _SHELLS:
                return None
            rest = rest[1:]
        return name if _shell_reads_stdin(rest) else None
    if name in (".", "source"):  # `… | . /dev/stdin`
        return name if rest[:1] and rest[0] in _STDIN_FILES else None
    interpreter = _interpreter(name)
    if interpreter is None:
        return None
    letters, long_options, with_argument, _ = interpreter
    k = 0
    while k < len(rest):
        word = rest[k]
        if word == "-":
            return name
        if word in with_argument:
            k += 2
            continue
        if word.partition("=")[0] in long_options or word == "-m" or word == "-f":
            return None
        if word.startswith("--"):
            k += 1
            continue
        if len(word) > 1 and word[0] == "-":
            if any(c in letters for c in word[1:]):
                return None
            k += 1
            continue
        return name if word in _STDIN_FILES else None  # a program file
    return name


def _shell_reads_stdin(rest: list[str]) -> bool:
    k = 0
    while k < len(rest):
        word = rest[k]
        if word in _SHELL_OPTION_ARGS:
            k += 2
            continue
        if word == "--":
            return k + 1 >= len(rest)
        if word.startswith("--"):
            k += 1
            continue
        if len(word) > 1 and word[0] in "-+":
            if word[0] == "-" and "c" in word[1:]:
                return False
            if word[0] == "-" and "s" in word[1:]:
                return True  # `sh -s ARG …`: the arguments are positional parameters
            k += 1
            continue
        return word in _STDIN_FILES  # a script file
    return True


#: Files that are the standard input: a script read from one is read from the pipe.
_STDIN_FILES = frozenset({"/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"})


#: awk options taking the next word (or the rest of theirs: `-F:`) as their argument.
_AWK_OPTION_ARGS = frozenset("Fvfeil")
#: jq options taking the next word(s) as their arguments, and how many.
_JQ_OPTION_ARGS = {
    "--arg": 2,
    "--argjson": 2,
    "--slurpfile": 2,
    "--rawfile": 2,
    "--indent": 1,
    "-L": 1,
    "--from-file": 1,
    "-f": 1,
    "--args": 0,
    "--jsonargs": 0,
}


def _option_argument(i: int, attached: bool, label: str) -> tuple[int, int, str]:
    """The span of the argument of the option at word `i`: in that word (`-eTEXT`, `--source=TEXT`)
    when `attached`, else the next word."""
    return (i, i + 1, label) if attached else (i + 1, i + 2, label)


def _awk_program(words: list[str], i: int, name: str) -> list[tuple[int, int, str]]:
    """awk's program: the word after gawk's `-e`/`--source`, else its first operand (none when a
    program file is given with `-f`/`--file`). `-v x=VALUE` and file operands are data."""
    n = len(words)
    found: list[tuple[int, int, str]] = []
    from_file = False
    while i < n:
        word = words[i]
        if word == "--":
            i += 1
            break
        option, equals, _ = word.partition("=")
        if word.startswith("--"):
            if option in ("--source", "--file", "--include", "--load", "--assign", "--field-separator"):
                if option == "--source":
                    found.append(_option_argument(i, bool(equals), f"{name} --source"))
                from_file = from_file or option == "--file"
                i += 1 if equals else 2
                continue
            i += 1
            continue
        if len(word) > 1 and word[0] == "-":
            letter = next((c for c in word[1:] if c in _AWK_OPTION_ARGS), None)
            if letter is None:
                i += 1
                continue
            attached = word.index(letter) + 1 < len(word)
            if letter == "e":
                found.append(_option_argument(i, attached, f"{name} -e"))
            from_file = from_file or letter == "f"
            i += 1 if attached else 2
            continue
        break
    if not found and not from_file and i < n:
        found.append((i, i + 1, name))
    return [span for span in found if span[0] < n]


def _sed_scripts(words: list[str], i: int, name: str) -> list[tuple[int, int, str]]:
    """Each script sed runs: every `-e SCRIPT` / `--expression=SCRIPT`, else its first operand
    (none when a script file is given with `-f`)."""
    n = len(words)
    found: list[tuple[int, int, str]] = []
    given = False
    first_operand: int | None = None
    while i < n:
        word = words[i]
        if word == "--":
            if first_operand is None and i + 1 < n:
                first_operand = i + 1
            break
        option, equals, _ = word.partition("=")
        if word.startswith("--"):
            if option in ("--expression", "--file", "--line-length"):
                if option == "--expression":
                    found.append(_option_argument(i, bool(equals), f"{name} --expression"))
                given = given or option != "--line-length"
                i += 1 if equals else 2
                continue
            i += 1
            continue
        if len(word) > 1 and word[0] == "-":
            k = 1
            step = 1
            while k < len(word):
                c = word[k]
                if c == "i":  # `-i[SUFFIX]`: the rest of the word is the suffix
                    break
                if c in "efl":
                    attached = k + 1 < len(word)
                    if c == "e":
                        found.append(_option_argument(i, attached, f"{name} -e"))
                    given = given or c != "l"
                    step = 1 if attached else 2
                    break
                k += 1
            i += step
            continue
        if first_operand is None:
            first_operand = i
        i += 1
    if not given and first_operand is not None:
        found.append((first_operand, first_operand + 1, name))
    return [span for span in found if span[0] < n]


def _first_operand(
    words: list[str], i: int, name: str, with_arguments: Mapping[str, int]
) -> tuple[int, int, str] | None:
    """The first word that is no option nor an option's argument (jq's filter; none with
    `-f FILE`/`--from-file`)."""
    n = len(words)
    while i < n:
        word = words[i]
        if word == "--":
            return (i + 1, i + 2, name) if i + 1 < n else None
        if word in ("-f", "--from-file"):
            return None
        if word in with_arguments:
            i += 1 + with_arguments[word]
            continue
        if len(word) > 1 and word[0] == "-":
            i += 1
            continue
        return (i, i + 1, name)
    return None


#: ssh options taking the next word as their argument.
_SSH_OPTION_ARGS = frozenset("BbcDEeFIiJLlmOoPpQRSWw")


def _ssh_command(words: list[str], i: int) -> list[tuple[int, int, str]]:
    """The words after ssh's destination: ssh joins them with spaces and the remote shell parses
    the line."""
    i = _ssh_destination(words, i)
    return [(i + 1, len(words), "ssh")] if i + 1 < len(words) else []


def _ssh_destination(words: list[str], i: int) -> int:
    """The index of ssh's destination (past its options)."""
    n = len(words)
    while i < n:
        word = words[i]
        if word == "--":
            return i + 1
        if len(word) > 1 and word[0] == "-":
            last = word[-1]
            i += 2 if last in _SSH_OPTION_ARGS and len(word) == 2 else 1
            continue
        break
    return i


def _ssh_stdin_program(words: list[str], i: int) -> str | None:
    """`ssh HOST` with no command (the remote login shell reads its commands from standard input), or
    whose remote command line has a shell or an interpreter read its program there (`ssh HOST bash
    -s`)."""
    i = _ssh_destination(words, i)
    if i + 1 >= len(words):
        return "ssh" if i < len(words) else None
    for remote, given in _Words(" ".join(words[i + 1 :])).commands():
        command = None if given else stdin_program([w for w, _, _ in remote])
        if command is not None:
            return f"ssh … {command}"
    return None


def _watch_command(words: list[str], i: int) -> list[tuple[int, int, str]]:
    """The command `watch` runs: its words joined and given to `sh -c` (not with `-x`/`--exec`)."""
    n = len(words)
    while i < n:
        word = words[i]
        if word in ("-x", "--exec"):
            return []
        if word == "--":
            i += 1
            break
        if word in ("-n", "--interval", "-q", "--equexit"):
            i += 2
            continue
        if word.startswith("-"):
            i += 1
            continue
        break
    return [(i, n, "watch")] if i < n else []


def runs_shell(command: str) -> bool:
    """Whether `command` (the third part of a `code_arguments` span) is a shell: its code may
    reference environment variables as `"$NAME"` (else: an interpreter's program, or `eval`)."""
    first = command.split(" ", 1)[0]
    return first in _SHELLS or first in ("eval", "watch")


#: Interpreters that take a program on the command line: (the short option letters that make the
#: next word the program, long options that do, options taking the next word as their argument,
#: options after which the rest is data).
_INTERPRETERS: dict[str, tuple[str, frozenset[str], frozenset[str], frozenset[str]]] = {
    "python": ("c", frozenset(), frozenset({"-W", "-X"}), frozenset({"-m", "-"})),
    "node": ("ep", frozenset({"--eval", "--print"}), frozenset({"-r", "--require"}), frozenset({"-"})),
    "perl": ("eE", frozenset(), frozenset(), frozenset({"-"})),
    "ruby": ("e", frozenset(), frozenset(), frozenset({"-"})),
    "php": ("r", frozenset(), frozenset(), frozenset({"-f"})),
}
_PYTHON_NAME = re.compile(r"(?:python|pypy)[0-9.]*")


def _interpreter(name: str) -> tuple[str, frozenset[str], frozenset[str], frozenset[str]] | None:
    if _PYTHON_NAME.fullmatch(name):
        return _INTERPRETERS["python"]
    return _INTERPRETERS.get("node" if name == "nodejs" else name)


def _program_text(
    words: list[str],
    i: int,
    name: str,
    letters: str,
    long_options: frozenset[str],
    with_argument: frozenset[str],
    data_after: frozenset[str],
) -> tuple[int, int, str] | None:
    """The word an interpreter runs as its program (`python3 -c CODE`, `node --eval=CODE`)."""
    while i < len(words):
        word = words[i]
        if word in data_after or word == "--":
            return None
        if word in with_argument:
            i += 2
            continue
        option, equals, _ = word.partition("=")
        if option in long_options:
            if equals:
                return (i, i + 1, f"{name} {option}")
            return (i + 1, i + 2, f"{name} {option}") if i + 1 < len(words) else None
        if word.startswith("--"):
            i += 1
            continue
        if len(word) > 1 and word[0] == "-":
            for k, c in enumerate(word[1:], 1):
                if c in letters:  # the program: the rest of this word (`-cCODE`), else the next one
                    if k + 1 < len(word):
                        return (i, i + 1, f"{name} -{c}")
                    return (i + 1, i + 2, f"{name} -{c}") if i + 1 < len(words) else None
                if f"-{c}" in with_argument:  # `-Wignore`: the rest is that option's argument
                    break
            i += 1
            continue
        return _substituted_file(word, i, name)  # a program file: its arguments are data
    return None


def _shell_script(words: list[str], i: int, name: str) -> tuple[int, int, str] | None:
    if name == "busybox" and i < len(words) and words[i] in _SHELLS:
        i += 1
    while i < len(words):
        word = words[i]
        if word in _SHELL_OPTION_ARGS:
            i += 2
            continue
        if word.startswith("--") and word != "--":
            i += 1
            continue
        if len(word) > 1 and word[0] in "-+" and word != "--":
            if "c" in word[1:] and word[0] == "-":
                return (i + 1, i + 2, f"{name} -c") if i + 1 < len(words) else None
            i += 1
            continue
        if word == "--" and i + 1 < len(words):
            i += 1
        return _substituted_file(words[i], i, name)  # a script file (its arguments are data)
    return None


def _substituted_file(word: str, i: int, name: str) -> tuple[int, int, str] | None:
    """A program file that is a process substitution (`bash <(…)`, `. <(…)`): what the commands
    in it write is the program."""
    return (i, i + 1, f"{name} <(…)") if word.startswith("<(") else None


def _code_word_spans(commands: list[_Command]) -> list[_Span]:
    """Offsets of the text a command runs as code (`code_arguments`, and the here-documents and
    here-strings a shell or an interpreter reads its program from: `stdin_program`), found in every
    simple command (`_Words`), `$(…)` and backticks included."""
    spans: list[_Span] = []
    for words, stdin in commands:
        plain = [w for w, _, _ in words]
        for first, end, command in code_arguments(plain):
            spans.extend((words[k][1], words[k][2], command, ARGUMENT) for k in range(first, end))
        if stdin:
            command = stdin_program(plain)
            if command is not None:
                spans.extend((start, end, command, source) for start, end, source in stdin)
    return spans


def _piped_program_spans(commands: list[_Command], pipes: list[tuple[int, int, int]]) -> list[_Span]:
    """The words (and here-documents) of the commands that write into a pipe a shell or an
    interpreter reads its program from (`printf %s {{v}} | sh`, `… | python3 -`), and into a pipe
    whose lines `xargs` makes part of code (`… | xargs sh -c`, `… | xargs -I{} sh -c '… {}'`)."""
    spans: list[_Span] = []
    for first, end, reader in pipes:
        words, stdin = commands[reader]
        if stdin:  # its standard input is its here-document or here-string, not the pipe
            continue
        plain = [w for w, _, _ in words]
        command = stdin_program(plain) or _xargs_program(plain)
        if command is None:
            continue
        for k in range(first, end):
            upstream, given = commands[k]
            spans.extend((start, stop, command, PIPE_STDIN) for _, start, stop in upstream)
            spans.extend((start, stop, command, PIPE_STDIN) for start, stop, _ in given)
    return spans


def _xargs_program(words: list[str]) -> str | None:
    """`xargs …` (as `words`' command) when the lines it reads become code: the script of the shell
    it runs (`xargs sh -c`: the first line is the script), or are put into code (`-I{}`/`-i`)."""
    i = _command_index(words)
    j = next((k for k in range(i or 0) if words[k].rsplit("/", 1)[-1] == "xargs"), None)
    if i is None or j is None:
        return None
    name = words[i].rsplit("/", 1)[-1]
    if any(w.startswith(("-I", "-i", "--replace")) for w in words[j:i]) and code_arguments(words[i:]):
        return f"xargs {name}"
    script = _shell_script([*words, "LINE"], i + 1, name) if name in _SHELLS else None
    if script is not None and script[0] == len(words):  # `xargs sh -c`: no script but the line
        return f"xargs {name} -c"
    return None


class _Words:
    """A rough shell word splitter, enough to find command names and options: each simple command
    as its words (text without quotes, start, end). Quoted text, `${…}`, `$(…)` and backticks stay
    inside their word; the commands in `$(…)` and backticks are split too. With each command, the
    text its here-documents and here-strings give it on standard input (start, end, which)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.found: list[_Command] = []
        #: Pipes: (first, end, reader) — the commands `found[first:end]` write into the pipe that
        #: `found[reader]` reads as its standard input (`a | b | sh`: a and b, then sh).
        self.pipes: list[tuple[int, int, int]] = []

    def commands(self) -> list[_Command]:
        self.split(0, len(self.text))
        return self.found

    def split(self, i: int, stop: int) -> None:
        text = self.text
        words: list[tuple[str, int, int]] = []
        stdin: list[tuple[int, int, str]] = []
        heredocs: list[tuple[str, list[tuple[int, int, str]]]] = []
        first = len(self.found)  # the first command of the current pipeline
        upstream: tuple[int, int] | None = None  # the commands writing into the pipe read next
        groups: list[int] = []  # pipeline starts outside the open `(…)` / `{ …; }` groups
        while i < stop:
            c = text[i]
            if c in " \t":
                i += 1
                continue
            if c in ";&|()\n":
                if words:
                    self.command(words, stdin, upstream)
                piped = not words and upstream is not None and len(self.found) == upstream[1]
                words, stdin = [], []
                if c == "|" and not text.startswith("||", i):  # `|` or `|&`
                    upstream = (first, len(self.found))
                    i += 2 if text.startswith("|&", i) else 1
                    continue
                if c == "(":
                    groups.append(first)
                    first = len(self.found)
                elif c == ")":
                    first = groups.pop() if groups else first
                elif not (c == "\n" and piped):  # a line may go on after a `|`
                    first, upstream = len(self.found), None
                if c == "\n" and heredocs:
                    i = self.skip_heredocs(i + 1, stop, heredocs)
                    heredocs = []
                    continue
                i += 2 if text.startswith(("&&", "||"), i) else 1
                continue
            if c == "#":
                end = text.find("\n", i, stop)
                i = stop if end < 0 else end
                continue
            if c == "<" and text.startswith("<<", i) and not text.startswith("<<<", i):
                i, delimiter = self.heredoc_delimiter(i + 2, stop)
                if delimiter:
                    heredocs.append((delimiter, stdin))
                continue
            if c in "<>" and text.startswith("(", i + 1):  # a process substitution: a word
                start = i
                i, word = self.word(i, stop)
                words.append((word, start, i))
                continue
            if c in "<>":  # a redirection: its target is no word of the command
                here_string = text.startswith("<<<", i)
                while i < stop and text[i] in "<>&|":
                    i += 1
                while i < stop and text[i] in " \t":
                    i += 1
                start = i
                i, _ = self.word(i, stop)
                if here_string:
                    stdin.append((start, i, HERESTRING_STDIN))
                continue
            start = i
            i, word = self.word(i, stop)
            if not words and word in ("{", "}") and i - start == 1:  # a `{ …; }` group
                if word == "{":
                    groups.append(first)
                    first = len(self.found)
                else:
                    first = groups.pop() if groups else first
                continue
            words.append((word, start, i))
        if words:
            self.command(words, stdin, upstream)

    def command(
        self,
        words: list[tuple[str, int, int]],
        stdin: list[tuple[int, int, str]],
        upstream: tuple[int, int] | None,
    ) -> None:
        if upstream is not None and upstream[0] < upstream[1]:
            self.pipes.append((*upstream, len(self.found)))
        self.found.append((words, stdin))

    def word(self, i: int, stop: int) -> tuple[int, str]:
        text = self.text
        out: list[str] = []
        while i < stop:
            c = text[i]
            if c in " \t\n;&|()<>" and not (c in "<>" and not out and text.startswith("(", i + 1)):
                break
            if c == "\\":
                out.append(text[i + 1 : i + 2])
                i += 2
            elif c == "'":
                end = text.find("'", i + 1, stop)
                end = stop if end < 0 else end
                out.append(text[i + 1 : end])
                i = end + 1
            elif c == '"':
                end = self.double_end(i + 1, stop)
                out.append(text[i + 1 : end])
                i = end + 1
            elif c == "`":
                end = text.find("`", i + 1, stop)
                end = stop if end < 0 else end
                self.split(i + 1, end)
                out.append(text[i : end + 1])
                i = end + 1
            elif text.startswith(("<(", ">("), i) and not out:
                end = self.closing(i + 2, stop, "(")
                self.split(i + 2, end)
                out.append(text[i : end + 1])
                i = end + 1
            elif text.startswith("$(", i) or text.startswith("${", i):
                end = self.closing(i + 2, stop, text[i + 1])
                if text[i + 1] == "(":
                    self.split(i + 2, end)
                out.append(text[i : end + 1])
                i = end + 1
            else:
                out.append(c)
                i += 1
        return min(i, stop), "".join(out)

    def double_end(self, i: int, stop: int, split: bool = True) -> int:
        """The closing `"` from after the opening one; `split`: the commands in its `$(…)` and
        backticks are split too (not while only looking for where a `$(…)` ends: each level
        would split its inner ones again, 2^depth times)."""
        text = self.text
        while i < stop:
            c = text[i]
            if c == "\\":
                i += 2
                continue
            if c == '"':
                return i
            if text.startswith("$(", i):
                end = self.closing(i + 2, stop, "(")
                if split:
                    self.split(i + 2, end)
                i = end + 1
                continue
            if c == "`":
                end = text.find("`", i + 1, stop)
                end = stop if end < 0 else end
                if split:
                    self.split(i + 1, end)
                i = end + 1
                continue
            i += 1
        return stop

    def closing(self, i: int, stop: int, opener: str) -> int:
        """The offset of the bracket closing `$(` or `${` (quotes inside skipped)."""
        text = self.text
        close = ")" if opener == "(" else "}"
        depth = 1
        while i < stop:
            c = text[i]
            if c == "\\":
                i += 2
                continue
            if c == "'":
                end = text.find("'", i + 1, stop)
                i = stop if end < 0 else end + 1
                continue
            if c == '"':
                i = self.double_end(i + 1, stop, split=False) + 1
                continue
            if c == opener:
                depth += 1
            elif c == close:
                depth -= 1
                if depth == 0:
                    return i
            i += 1
        return stop

    def heredoc_delimiter(self, i: int, stop: int) -> tuple[int, str]:
        text = self.text
        if i < stop and text[i] == "-":
            i += 1
        while i < stop and text[i] in " \t":
            i += 1
        i, word = self.word(i, stop)
        return i, word

    def skip_heredocs(
        self, i: int, stop: int, delimiters: list[tuple[str, list[tuple[int, int, str]]]]
    ) -> int:
        """Past the here-document bodies starting at `i`; each body's span goes to its command."""
        text = self.text
        for delimiter, stdin in delimiters:
            body = i
            while i < stop:
                end = text.find("\n", i, stop)
                end = stop if end < 0 else end
                line = text[i:end]
                if line.lstrip("\t") == delimiter:
                    stdin.append((body, i, HEREDOC_STDIN))
                    i = end + 1
                    break
                i = end + 1
            else:
                stdin.append((body, stop, HEREDOC_STDIN))
        return min(i, stop)


def _odd_backslashes(text: str, index: int) -> bool:
    """Whether the backslash at `index` is itself unescaped (an odd run of backslashes ends there)."""
    count = 0
    while index >= 0 and text[index] == "\\":
        count += 1
        index -= 1
    return count % 2 == 1


def render_shell_command(
    text: str, variables: Mapping[str, str], *, prefix: str = VALUE_ENV_PREFIX, wording: Wording = SCRIPT
) -> tuple[str, dict[str, str]]:
    """`run` text with every known placeholder replaced by a reference to an environment variable,
    and those variables. Unknown placeholders are removed (engine.md §9.9). Raises
    `ShellTemplateError` for a placeholder with no safe insertion (worded by `wording`)."""
    uses = scan_placeholders(text, wording)
    if not uses:
        return text, {}
    out: list[str] = []
    env: dict[str, str] = {}
    names: dict[str, str] = {}
    pos = 0
    for use in uses:
        if use.problem is not None:
            raise ShellTemplateError(use)
        out.append(text[pos : use.start])
        pos = use.end
        value = variables.get(use.key)
        if value is None:
            continue
        name = names.get(use.key)
        if name is None:
            name = names[use.key] = f"{prefix}{len(names) + 1}"
            env[name] = value
        out.append(_INSERT[use.context].format(name))
    out.append(text[pos:])
    return "".join(out), env
