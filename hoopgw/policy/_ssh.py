"""SSH policy classes: exec commands, file operations, forwards and transfers (docs/SSH.md).

An exec command is split into simple commands (:func:`split_command`), each matched against the command
classes of ``[ssh] command_classes`` and the ``exec:GLOB`` globs the caller's policies name; the result
is a set of class names for ``SessionPolicy.decide_classes``. Globs are shell globs matched
case-sensitively against the whole text. Matching that adds a class (command classes, ``exec:GLOB``
classes: deny rules) lets ``*`` cross spaces and ``/`` (``fnmatch.fnmatchcase``); an ``exec:GLOB`` vouches
for a command (drops its plain ``exec``: allow rules) only when it matches with ``*`` inside one word and
``**`` across words (:func:`_word_glob`).
"""

from __future__ import annotations

import fnmatch
import functools
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from hoopgw.policy._engine import ssh_refusal
from hoopgw.policy._shell import MAX_DEPTH, Unparseable, is_redirect, lex

__all__ = [
    "FORWARD_KINDS",
    "MAX_COMMAND_LENGTH",
    "Transfer",
    "exec_classes",
    "file_classes",
    "forward_classes",
    "forward_target",
    "split_command",
    "ssh_refusal",
    "transfer_of",
]

ForwardKind = Literal["local", "remote", "dynamic", "agent", "x11"]
FORWARD_KINDS: tuple[ForwardKind, ...] = ("local", "remote", "dynamic", "agent", "x11")

#: One simple command seen through its wrappers: its forms, outermost first, each a tuple of words
#: with the program reduced to its basename (``sudo -u root rm -rf /`` -> the sudo form, then ``rm``)
#: and its redirections (operator, target) moved to the end (``>/dev/null rm x`` is ``rm x > /dev/null``).
_Chain = tuple[tuple[str, ...], ...]

_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\+?=")
#: Words that start a compound command or separate its parts: dropped in front of a command.
_RESERVED = frozenset({"!", "{", "}", "if", "then", "elif", "else", "fi", "while", "until", "do",
                       "done", "esac", "coproc", "in"})  # fmt: skip
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "posh", "yash", "fish", "csh",
                     "tcsh", "rbash"})  # fmt: skip
#: Interpreters that read a program from stdin (or run a prompt) when given none.
_INTERPRETERS = re.compile(r"(?:python|pypy|perl|ruby|php|lua|luajit|tclsh|wish)[0-9.]*|irb|nodejs|node")
#: Their options that give the program (``python -c``, ``-m``, ``perl -e``, ``php -r``/``-f``).
_CODE_OPTIONS = frozenset("cemErf")
#: Programs that start or attach to interactive shells whatever their arguments.
_SHELL_PROGRAMS = frozenset({"tmux", "screen", "byobu", "zellij", "login"})
_STDIN_FILES = frozenset({"/dev/stdin", "/dev/fd/0", "/proc/self/fd/0", "-"})
_MAX_WRAPPERS = 16
#: Longer exec commands are not split (bounded work per request): they carry every class.
MAX_COMMAND_LENGTH = 64 * 1024
#: Output redirections to these are not writes.
_HARMLESS_TARGETS = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty"})
#: Input redirections from these read no file.
_HARMLESS_SOURCES = frozenset({"/dev/null", "/dev/zero", "/dev/stdin", "/dev/tty"})
#: ``-vrf`` -> ``-v -r -f`` (matched too, so ``rm -vrf`` meets the ``rm -r*`` globs).
_SHORT_BUNDLE = re.compile(r"-[A-Za-z]{2,}\Z")


def split_command(command: str) -> list[list[str]]:
    """The simple commands ``command`` runs, unwrapped (``sudo``, ``sh -c``, ``env`` …), program basenames.

    A command the lexer cannot follow (unbalanced quotes, nesting too deep) is one word: the whole string.
    """
    chains, _ = _chains_of(command)
    return [list(chain[-1]) for chain in chains]


def exec_classes(
    command: str, command_classes: Mapping[str, Sequence[str]], exec_globs: Iterable[str]
) -> frozenset[str]:
    """The policy classes of an exec request for ``command``.

    Per simple command: the command classes whose globs match it, ``exec:G`` for each glob G of
    ``exec_globs`` that matches it (``*`` crossing spaces), ``shell`` when it starts a shell that reads
    commands the gateway does not see (``sh``, ``bash -i``, ``python3``, ``su``, ``sudo -i`` …), and plain
    ``exec`` unless some glob covers it. A glob covers a command when it matches it with ``*`` and ``?``
    inside one word and ``**`` across words (``exec:cat /var/log/*`` covers ``cat /var/log/syslog``, not
    ``cat /var/log/syslog /etc/shadow``). A simple command seen through a wrapper that changes who or how it
    runs (``sudo``, ``env``/``VAR=value``, ``su``, ``doas``, ``chroot`` …) is covered only when every form
    matches (``sudo rm x`` and ``rm x``); one with an output redirection (other than to ``/dev/null``) only
    by a glob that contains ``>``, one reading a file on stdin (``< FILE``) only by one that contains
    ``<``, one with a ``..`` path part only by one that contains ``..``. Redirections are matched at the
    end of the command (``>/dev/null rm -rf x`` is ``rm -rf x > /dev/null``) and without them; paths are
    also matched normalized (``cat /var/log/../../etc/shadow`` is ``cat /etc/shadow`` too) and short option
    bundles split (``rm -vrf`` is ``rm -v -r -f`` too): each only adds classes. The whole string is matched
    too (it adds classes, it never removes ``exec``). An empty command carries ``exec``; one the splitter
    cannot follow, or longer than ``MAX_COMMAND_LENGTH`` characters, carries ``exec`` and every command
    class (it may be anything).
    """
    globs = tuple(dict.fromkeys(exec_globs))
    classes: set[str] = set()
    chains, unparseable = _chains_of(command) if len(command) <= MAX_COMMAND_LENGTH else ([], True)
    if unparseable:
        # too long to split at a bounded cost, or beyond the splitter: it may be anything
        classes.update(("exec", *command_classes))
    elif not chains:
        classes.add("exec")
    for chain in chains:
        covered = True
        for form in chain:
            plain = form[: _redirects_start(form)]
            for text in _texts(form, plain):
                classes.update(f"exec:{g}" for g in globs if fnmatch.fnmatchcase(text, g))
                classes.update(_command_classes_of(text, command_classes))
            if _starts_shell(plain):
                classes.add("shell")
            covered = covered and _covered(form, plain, globs)
        if not covered:
            classes.add("exec")
    classes.update(_command_classes_of(command, command_classes))
    classes.update(f"exec:{g}" for g in globs if fnmatch.fnmatchcase(command, g))
    return frozenset(classes)


def _texts(form: tuple[str, ...], plain: tuple[str, ...]) -> set[str]:
    """What class-adding globs are matched against: the form, without its redirections, with its paths
    normalized and its short option bundles split."""
    out: set[str] = set()
    for words in {form, plain}:
        out.add(" ".join(words))
        out.add(" ".join(_normpath(w) for w in words))
        exploded: list[str] = []
        for w in words:
            exploded.extend(f"-{c}" for c in w[1:]) if _SHORT_BUNDLE.match(w) else exploded.append(w)
        out.add(" ".join(exploded))
    return out


def _covered(form: tuple[str, ...], plain: tuple[str, ...], globs: Sequence[str]) -> bool:
    """True when some glob vouches for ``form`` (matching word by word, see :func:`exec_classes`)."""
    writes, reads = _writes(form), _reads(form)
    candidates = [" ".join(form)] if writes or reads else [" ".join(form), " ".join(plain)]
    dotdot = any(".." in w.split("/") for w in plain[1:])
    for g in globs:
        if (writes and ">" not in g) or (reads and "<" not in g) or (dotdot and ".." not in g):
            continue
        if any(_word_glob(g).fullmatch(t) for t in candidates):
            return True
    return False


def file_classes(path: str, write: bool, globs: Iterable[str]) -> frozenset[str]:
    """The classes of a file operation: ``file-write`` or ``file-read``, or ``file-…:G`` for matching globs.

    ``globs`` are the GLOB parts of the ``file-write:``/``file-read:`` classes the policies name (pass
    the ones of the operation's direction). The path is normalized (``posixpath.normpath``). A relative
    path (relative to the upstream user's home, which the gateway does not know) is also matched with a
    ``/`` in front and its leading ``../`` removed, so a glob can only catch more; and it always keeps
    the plain class, so an allow glob never vouches for it. An absolute path drops the plain class when
    a glob matches it (``allow = ["file-write:/srv/uploads/*"]`` allows writes there and nowhere else).
    """
    kind = "file-write" if write else "file-read"
    norm = posixpath.normpath(path) if path else "."
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    candidates = [norm]
    relative = not norm.startswith("/")
    if relative:
        parts = norm.split("/")
        while parts and parts[0] in ("..", "."):
            parts.pop(0)
        candidates.append("/" + "/".join(parts))
    matched = [g for g in dict.fromkeys(globs) if any(fnmatch.fnmatchcase(c, g) for c in candidates)]
    classes = {f"{kind}:{g}" for g in matched}
    if relative or not matched:
        classes.add(kind)
    return frozenset(classes)


def forward_target(kind: str, host: str = "", port: int = 0) -> str:
    """What ``forward:`` globs match: ``local:HOST:PORT``, ``remote:HOST:PORT``, ``dynamic``, ``agent``
    or ``x11``.

    An IPv6 host is written in brackets (``local:[::1]:5432``).
    """
    if kind not in ("local", "remote"):
        return kind
    shown = f"[{host}]" if ":" in host else host
    return f"{kind}:{shown}:{port}"


def forward_classes(kind: str, host: str, port: int, globs: Iterable[str]) -> frozenset[str]:
    """``forward:G`` for each glob G matching the forward (see :func:`forward_target`), else ``forward``.

    ``kind`` is one of :data:`FORWARD_KINDS` (ValueError otherwise); ``host``/``port`` count for
    ``local`` (``ssh -L``: the destination) and ``remote`` (``ssh -R``: the address bound on the host).
    """
    if kind not in FORWARD_KINDS:
        raise ValueError(f"unknown forward kind {kind!r}")
    target = forward_target(kind, host, port)
    matched = [g for g in dict.fromkeys(globs) if fnmatch.fnmatchcase(target, g)]
    return frozenset(f"forward:{g}" for g in matched) if matched else frozenset({"forward"})


# -- transfers ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Transfer:
    """A file transfer run as an exec command (the remote end of ``scp -O`` or ``rsync -e ssh``)."""

    kind: Literal["scp", "rsync"]
    #: True when files go to the host (upload)
    write: bool
    paths: tuple[str, ...]
    recursive: bool


def transfer_of(command: str) -> Transfer | None:
    """The transfer ``command`` is (``scp -t|-f …``, ``rsync --server …``), or None for any other command.

    Only a single plain command counts: anything wrapped, chained or substituted is an ordinary exec.
    """
    try:
        commands = lex(command)
    except Unparseable:
        return None
    if len(commands) != 1 or any(_has_expansion(w) for w in commands[0]):
        return None
    words = commands[0]
    program = posixpath.basename(words[0])
    if program == "scp":
        return _scp(words[1:])
    if program == "rsync":
        return _rsync(words[1:])
    return None


def _has_expansion(word: str) -> bool:
    return any(c in word for c in "$`") or is_redirect(word)


def _scp(args: list[str]) -> Transfer | None:
    flags: set[str] = set()
    paths: list[str] = []
    options = True
    for arg in args:
        if options and arg == "--":
            options = False
        elif options and arg.startswith("-") and len(arg) > 1:
            if not set(arg[1:]) <= set("trfpdvqT3"):
                return None
            flags.update(arg[1:])
        else:
            paths.append(arg)
    if ("t" in flags) == ("f" in flags) or not paths:
        return None
    return Transfer("scp", "t" in flags, tuple(paths), "r" in flags)


#: Short options an rsync client may send to its server, none taking a value (``-T``, ``-B``, ``-f``,
#: ``-M`` and ``-s`` are not here: a value we would have to judge, or arguments sent over the protocol);
#: ``-e`` ends a bundle with the client's protocol information (``-vlogDtpre.iLsfxCIvu``).
_RSYNC_BUNDLE = re.compile(r"-([vqcarRbudlLkKHpEAXogDtOJSnWxyzCFhimUN8]*)(?:e(?:\d+\.\d+|\.)[A-Za-z]*)?")
#: Long options an rsync client sends to its server that neither name a path nor run anything.
_RSYNC_FLAGS = frozenset({
    "server", "sender", "recursive", "delete", "delete-before", "delete-during", "delete-delay",
    "delete-after", "delete-excluded", "delete-missing-args", "ignore-missing-args",
    "remove-source-files", "force", "ignore-errors", "ignore-existing", "existing", "size-only",
    "ignore-times", "inplace", "append", "append-verify", "partial", "delay-updates", "numeric-ids",
    "mkpath", "copy-unsafe-links", "safe-links", "munge-links", "no-implied-dirs", "preallocate",
    "open-noatime", "list-only", "msgs2stderr", "no-msgs2stderr", "copy-devices", "write-devices", "super",
    "no-super", "fuzzy", "use-qsort", "qsort", "old-compress", "new-compress", "no-W", "no-whole-file",
    "fsync", "no-inc-recursive", "no-i-r", "omit-dir-times", "omit-link-times", "atimes", "crtimes",
    "checksum", "compress", "dry-run", "from0",
})  # fmt: skip
#: Long options with a value (``--NAME=VALUE``) an rsync client sends that name no path.
_RSYNC_VALUES = frozenset({
    "compress-level", "compress-choice", "zc", "checksum-choice", "cc", "timeout", "contimeout",
    "bwlimit", "max-delete", "min-size", "max-size", "modify-window", "checksum-seed", "suffix", "iconv",
    "usermap", "groupmap", "chown", "info", "debug", "stderr", "max-alloc", "block-size", "log-format",
    "out-format", "protocol", "skip-compress", "stop-after", "stop-at",
})  # fmt: skip


def _rsync(args: list[str]) -> Transfer | None:
    """``rsync --server [--sender] OPTIONS . PATH…`` as its client sends it; None when any option is
    unknown or dangerous (``--daemon``, ``--config``, ``--log-file``, ``--temp-dir``, ``--*-dest``,
    ``--files-from``, ``-e CMD`` …): such a command is an ordinary exec. Deleting options
    (``--delete*``, ``--remove-source-files``) make it a write whatever the direction."""
    if not args or args[0] != "--server":
        return None
    sender = recursive = deletes = False
    for i, arg in enumerate(args):
        if arg == ".":
            paths = tuple(args[i + 1 :])
            if not paths or any(p.startswith("-") for p in paths):
                return None  # rsync reads options after the operands too
            return Transfer("rsync", not sender or deletes, paths, recursive)
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if eq and (name not in _RSYNC_VALUES or (name == "suffix" and "/" in value)):
                return None
            if not eq and name not in _RSYNC_FLAGS:
                return None
            sender = sender or name == "sender"
            recursive = recursive or name == "recursive"
            deletes = deletes or name.startswith("delete") or name == "remove-source-files"
            continue
        m = _RSYNC_BUNDLE.fullmatch(arg)
        if m is None:
            return None
        recursive = recursive or "r" in m.group(1)
    return None


# -- splitting ----------------------------------------------------------------------------------------
def _chains_of(command: str) -> tuple[list[_Chain], bool]:
    """(chains, unparseable): an unparseable command is one chain of one form, the whole string."""
    try:
        return _split(command, 0), False
    except Unparseable:
        return [((command,),)], True


def _split(text: str, depth: int) -> list[_Chain]:
    out: list[_Chain] = []
    for words in lex(text, depth):
        out.extend(_unwrap(words, depth))
    return out


def _program(word: str) -> str:
    """``/bin/rm`` -> ``rm``; a word with an expansion in it stays whole."""
    if "$" in word or "`" in word:
        return word
    return posixpath.basename(word) or word


def _norm(words: Sequence[str]) -> tuple[str, ...]:
    return (_program(words[0]), *words[1:])


def _unwrap(words: list[str], depth: int) -> list[_Chain]:
    """The chains of one lexed simple command (a shell script inside may give several); the command's
    redirections go at the end of each form."""
    words, redirects = _redirections(words)
    chains, fed = _unwrap_words(words, redirects, depth)
    if fed:  # the here-string was the shell's script: its commands do not read it
        redirects = _without_herestrings(redirects)
    if not redirects:
        return chains
    return [tuple((*form, *redirects) for form in chain) for chain in chains]


def _herestrings(redirects: tuple[str, ...]) -> list[str]:
    return [redirects[i + 1] for i in range(0, len(redirects) - 1, 2) if redirects[i].endswith("<<<")]


def _without_herestrings(redirects: tuple[str, ...]) -> tuple[str, ...]:
    pairs = [redirects[i : i + 2] for i in range(0, len(redirects), 2)]
    return tuple(w for pair in pairs if not pair[0].endswith("<<<") for w in pair)


def _redirections(words: list[str]) -> tuple[list[str], tuple[str, ...]]:
    """``words`` without their redirections, and those (operator, target, …)."""
    plain: list[str] = []
    redirects: list[str] = []
    i = 0
    while i < len(words):
        if is_redirect(words[i]):
            redirects.extend(words[i : i + 2])
            i += 2
        else:
            plain.append(words[i])
            i += 1
    return plain, tuple(redirects)


def _unwrap_words(words: list[str], redirects: tuple[str, ...], depth: int) -> tuple[list[_Chain], bool]:
    """The chains of a simple command without its redirections, and whether a shell took its
    here-string as its script."""
    forms: list[tuple[str, ...]] = []
    extra: list[_Chain] = []
    for _ in range(_MAX_WRAPPERS):
        n = 0
        while n < len(words) and _ASSIGNMENT.match(words[n]):
            n += 1
        if n:
            # VAR=value changes how the rest runs (PATH, LD_PRELOAD): a form of its own
            forms.append((*words[:n], *_norm(words[n:])) if n < len(words) else tuple(words))
            words = words[n:]
        while words and words[0] in _RESERVED:
            words = words[1:]
        if words and words[0] == "function":
            words = words[2:]  # function NAME { …; }: the body follows
            continue
        if not words:
            break
        program = _program(words[0])
        script, fed = _script_of(program, words[1:], redirects)
        if script is not None:
            if program in _OPAQUE_SCRIPTS:
                forms.append(_norm(words))
            prefix = tuple(forms)
            return extra + [prefix + chain for chain in _split(script, depth + 1)], fed
        if program == "find":
            for sub in _find_exec(words[1:]):
                extra.extend(tuple(forms) + chain for chain in _unwrap(sub, depth + 1))
        wrapper = _WRAPPERS.get(program)
        if wrapper is None:
            break
        step = wrapper(words[1:])
        if step is None:
            break
        rest, transparent = step
        if not rest:
            break
        if not transparent:
            forms.append(_norm(words))
        words = rest
    if words:
        forms.append(_norm(words))
    if depth > MAX_DEPTH:
        raise Unparseable("nested too deeply")
    return extra + ([tuple(forms)] if forms else []), False


#: Wrappers of a script that change who runs it: their own form must be covered too.
_OPAQUE_SCRIPTS = frozenset({"su", "runuser"})


def _script_of(program: str, args: list[str], redirects: tuple[str, ...]) -> tuple[str | None, bool]:
    """The shell script ``program args`` runs (``sh -c S``, ``bash <<< S``, ``eval S``, ``su -c S`` …), and
    whether it is the here-string."""
    script = None
    if program in _SHELLS:
        script = _shell_args(args, program == "fish")[0]
    if script is None and (program in _SHELLS or (program in ("source", ".") and args[:1] == ["/dev/stdin"])):
        bodies = _herestrings(redirects)  # bash <<< 'rm -rf x': the here-string is the script
        return ("\n".join(bodies), True) if bodies else (None, False)
    return script if script is not None else _script_arg(program, args), False


def _script_arg(program: str, args: list[str]) -> str | None:
    if program == "eval":
        return " ".join(args)
    if program in ("su", "runuser", "script"):
        return _option_value(args, ("-c", "--command", "--session-command"))
    if program == "flock":
        rest = _skip_options(args, "wE", frozenset({"timeout", "wait", "conflict-exit-code"}))
        if len(rest) > 2 and rest[1] in ("-c", "--command"):
            return rest[2]
        return None
    if program == "watch":
        rest = _skip_options(args, "nq", frozenset({"interval", "equexit"}))
        if any(a == "--exec" or _short_flag(a, "x") for a in args[: len(args) - len(rest)]):
            return None  # watch -x CMD runs CMD itself: a wrapper
        return " ".join(rest) if rest else None
    if program == "parallel":
        return _parallel(args)
    return None


def _normpath(word: str) -> str:
    """A word holding a path with ``.``, ``..`` or ``//`` parts, normalized; any other word as it is."""
    if "/" not in word or "$" in word or "`" in word:
        return word
    if "//" not in word and not any(part in (".", "..") for part in word.split("/")):
        return word
    return posixpath.normpath(word)


def _redirects_start(form: tuple[str, ...]) -> int:
    """Where the redirections at the end of ``form`` start (``len(form)`` when it has none)."""
    for i, word in enumerate(form):
        if is_redirect(word):
            return i
    return len(form)


def _redirect_pairs(form: tuple[str, ...]) -> Iterable[tuple[str, str]]:
    start = _redirects_start(form)
    for i in range(start, len(form), 2):
        yield form[i], form[i + 1] if i + 1 < len(form) else ""


def _writes(form: tuple[str, ...]) -> bool:
    """True when ``form`` redirects output to a file (not /dev/null, not another descriptor)."""
    for op, target in _redirect_pairs(form):
        if ">" not in op:
            continue
        if op.endswith(">&") and (target.isdigit() or target == "-"):
            continue
        if target in _HARMLESS_TARGETS:
            continue
        return True
    return False


def _reads(form: tuple[str, ...]) -> bool:
    """True when ``form`` reads a file on an input redirection (``< FILE``, not a here-document)."""
    for op, target in _redirect_pairs(form):
        bare = op.lstrip("0123456789")
        if not bare.startswith("<") or bare.startswith("<<"):
            continue
        if bare == "<&" and (target.isdigit() or target == "-"):
            continue
        if target in _HARMLESS_SOURCES:
            continue
        return True
    return False


@functools.lru_cache(maxsize=1024)
def _word_glob(glob: str) -> re.Pattern[str]:
    """``glob`` as a regular expression where ``*`` and ``?`` stay inside one word (no space) and ``**``
    crosses words; ``[…]`` as in fnmatch."""
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        i += 1
        if c == "*":
            if i < n and glob[i] == "*":
                while i < n and glob[i] == "*":
                    i += 1
                out.append(".*")
            else:
                out.append("[^ ]*")
        elif c == "?":
            out.append("[^ ]")
        elif c == "[":
            j = i
            if j < n and glob[j] == "!":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:
                out.append("\\[")
                continue
            negate = glob[i] == "!"
            body = "".join(c if c == "-" else re.escape(c) for c in glob[i + negate : j])
            i = j + 1
            out.append(f"[{'^' if negate else ''}{body}]")
        else:
            out.append(re.escape(c))
    return re.compile("".join(out), re.DOTALL)


def _starts_shell(words: tuple[str, ...]) -> bool:
    """True when the simple command ``words`` (no redirections) starts a shell reading commands the
    gateway does not see: a shell or interpreter without a script (``sh``, ``bash -s``, ``bash -i``,
    ``python3``), ``su``/``runuser`` without ``-c``, ``sudo -i|-s``, ``script`` without ``-c``, ``chroot``,
    ``unshare`` or ``nsenter`` without a command, ``tmux``, ``screen``, ``source /dev/stdin``."""
    if not words:
        return False
    program, args = words[0], list(words[1:])
    if program in _SHELLS:
        script, flags, operands = _shell_args(args, program == "fish")
        return script is None and (not operands or bool(flags & {"s", "i"}))
    if _INTERPRETERS.fullmatch(program):
        return _interpreter_reads_stdin(program, args)
    if program in _SHELL_PROGRAMS:
        return True
    if program in ("su", "runuser", "script"):
        if _option_value(args, ("-c", "--command", "--session-command")) is not None:
            return False
        return program != "runuser" or not any(a == "--user" or a.startswith(("-u", "--user=")) for a in args)
    if program in ("sudo", "doas"):
        rest = _skip_options(args, "aCcDgpRrTtUu", _SUDO_LONG, attached="h") if program == "sudo" else []
        if program == "doas":
            rest = _skip_options(args, "aCu")
        options = args[: len(args) - len(rest)]
        shells = ("--login", "--shell") if program == "sudo" else ()
        return not rest and any(a in shells or _short_flag(a, "s") or _short_flag(a, "i") for a in options)
    if program in ("chroot", "unshare", "nsenter"):
        step = _WRAPPERS[program](args)
        return step is not None and not step[0]
    if program in ("source", "."):
        return bool(args) and args[0] in _STDIN_FILES
    return False


def _short_flag(arg: str, flag: str) -> bool:
    """True when the option word ``arg`` is a bundle of short flags holding ``flag`` (``-is`` has ``s``)."""
    return arg.startswith("-") and not arg.startswith("--") and flag in arg[1:]


def _interpreter_reads_stdin(program: str, args: list[str]) -> bool:
    """``python3``, ``python3 -``, ``python3 -i x.py``, ``perl`` …: the program comes from stdin or a
    prompt."""
    for arg in args:
        if arg == "-":
            return True
        if arg in ("--version", "-V", "--help", "-h", "-v", "-version"):
            return False
        if arg.startswith("--"):
            if arg.startswith(("--eval", "--print", "--command")):
                return False
            continue
        if not arg.startswith("-"):
            return program.startswith(("python", "pypy", "node")) and "-i" in args
        letters = arg[1:]
        if program.startswith(("python", "pypy", "node")) and letters.startswith("i"):
            return True
        if set(letters[:1]) & _CODE_OPTIONS or (len(letters) < 8 and set(letters) & _CODE_OPTIONS):
            return False
    return True


def _command_classes_of(text: str, command_classes: Mapping[str, Sequence[str]]) -> set[str]:
    return {name for name, globs in command_classes.items() if _any_glob(tuple(globs)).match(text)}


@functools.lru_cache(maxsize=1024)
def _any_glob(globs: tuple[str, ...]) -> re.Pattern[str]:
    """One regular expression matching what any of ``globs`` matches (as ``fnmatch.fnmatchcase``)."""
    if not globs:
        return re.compile(r"(?!)")
    return re.compile("|".join(fnmatch.translate(g) for g in globs))


def _shell_args(args: list[str], fish: bool = False) -> tuple[str | None, set[str], list[str]]:
    """(SCRIPT of ``sh [options] -c SCRIPT …`` or None, the short flags, the operands).

    fish's ``-c``/``--command`` and ``-C``/``--init-command`` (run before its prompt) count as scripts.
    """
    flags: set[str] = set()
    scripts: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--" or arg == "-":
            i += 1
            break
        name, eq, value = arg.partition("=")
        if fish and name in ("--command", "--init-command"):
            if eq:
                scripts.append(value)
            elif i + 1 < len(args):
                scripts.append(args[i + 1])
                i += 1
            i += 1
        elif arg.startswith("--"):
            i += 2 if arg in ("--rcfile", "--init-file") else 1
        elif arg.startswith(("-", "+")) and len(arg) > 1:
            flags.update(arg[1:])
            if fish and arg[1:].endswith("C") and i + 1 < len(args):
                scripts.append(args[i + 1])  # fish -C COMMAND
                i += 1
            elif arg[1:].endswith(("o", "O")):
                i += 1  # -o OPTION
            i += 1
        else:
            break
    operands = args[i:]
    if "c" in flags and operands:
        scripts.append(operands[0])
        operands = operands[1:]
    return ("\n".join(scripts) if scripts else None), flags, operands


def _option_value(args: list[str], names: tuple[str, ...]) -> str | None:
    """The value of the first of the options ``names`` in ``args`` (``-c V``, ``-cV``, ``-lc V``,
    ``--command V``, ``--command=V``)."""
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if name.startswith("--"):
                if arg.startswith(name + "="):
                    return arg[len(name) + 1 :]
            elif arg.startswith("-") and not arg.startswith("--") and name[1] in arg[1:]:
                at = arg.index(name[1], 1)
                if not arg[1:at].isalpha() and at > 1:
                    continue  # -s/bin/csh: the c is in another option's value
                if arg[at + 1 :]:
                    return arg[at + 1 :]
                if i + 1 < len(args):
                    return args[i + 1]
    return None


def _find_exec(args: list[str]) -> list[list[str]]:
    """The commands of ``find … -exec CMD {} ;`` (also -execdir, -ok, -okdir)."""
    out: list[list[str]] = []
    i = 0
    while i < len(args):
        if args[i] in ("-exec", "-execdir", "-ok", "-okdir"):
            j = i + 1
            while j < len(args) and args[j] not in (";", "+"):
                j += 1
            if j > i + 1:
                out.append(args[i + 1 : j])
            i = j
        i += 1
    return out


def _skip_options(
    args: list[str],
    with_arg: str = "",
    long_with_arg: frozenset[str] = frozenset(),
    attached: str = "",
) -> list[str]:
    """``args`` after the leading options (``with_arg`` short options take a value; ``attached`` ones
    take one only when attached, like ``-i{}``)."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return args[i + 1 :]
        if arg.startswith("--"):
            i += 2 if arg[2:] in long_with_arg else 1
            continue
        if not arg.startswith("-") or arg == "-":
            break
        for k, c in enumerate(arg[1:], start=1):
            if c in with_arg:
                if k == len(arg) - 1:
                    i += 1  # the value is the next word
                break
            if c in attached:
                break
        i += 1
    return args[i:]


_Step = tuple[list[str], bool] | None


_SUDO_LONG = frozenset({"user", "group", "chdir", "close-from", "host", "prompt", "chroot", "role", "type",
                        "command-timeout", "other-user", "login-class", "auth-type"})  # fmt: skip


def _sudo(args: list[str]) -> _Step:
    return _skip_options(args, "aCcDgpRrTtUu", _SUDO_LONG, attached="h"), False


def _doas(args: list[str]) -> _Step:
    return _skip_options(args, "aCu"), False


def _env(args: list[str]) -> _Step:
    if any(a.startswith("-S") or a.startswith("--split-string") for a in args[:8]):
        raise Unparseable("env -S")
    rest = _skip_options(args, "uC", frozenset({"unset", "chdir"}))
    while rest and (rest[0] == "-" or _ASSIGNMENT.match(rest[0])):
        rest = rest[1:]
    return rest, rest == args


def _chroot(args: list[str]) -> _Step:
    rest = _skip_options(args, "", frozenset({"userspec", "groups"}))
    return rest[1:], False


def _nice(args: list[str]) -> _Step:
    if args and re.fullmatch(r"-\d+", args[0]):
        return args[1:], True
    return _skip_options(args, "n", frozenset({"adjustment"})), True


def _timeout(args: list[str]) -> _Step:
    rest = _skip_options(args, "ks", frozenset({"signal", "kill-after"}))
    return rest[1:], True


def _xargs(args: list[str]) -> _Step:
    long = frozenset({"arg-file", "delimiter", "max-args", "max-procs", "max-chars", "process-slot-var"})
    rest = _skip_options(args, "adEILnPs", long, attached="eil")
    return rest or ["echo"], True


def _plain(with_arg: str = "", attached: str = "") -> Callable[[list[str]], _Step]:
    def step(args: list[str]) -> _Step:
        return _skip_options(args, with_arg, attached=attached), True

    return step


def _chrt(args: list[str]) -> _Step:
    if any(a in ("-p", "--pid", "-m", "--max") or _short_flag(a, "p") for a in args[:4]):
        return None  # a running process, or the limits: no command
    rest = _skip_options(args, "TPD", frozenset({"sched-runtime", "sched-period", "sched-deadline"}))
    return rest[1:], True  # the priority, then the command


def _taskset(args: list[str]) -> _Step:
    if any(a in ("-p", "--pid") or _short_flag(a, "p") for a in args[:3]):
        return None
    return _skip_options(args, "")[1:], True  # the mask or cpu list, then the command


def _flock(args: list[str]) -> _Step:
    rest = _skip_options(args, "wE", frozenset({"timeout", "wait", "conflict-exit-code"}))
    return rest[1:], True  # the lock file, then the command (flock FILE -c SCRIPT: _script_of)


def _runuser(args: list[str]) -> _Step:
    if not any(a == "--user" or a.startswith(("-u", "--user=")) for a in args):
        return None  # runuser USER: a login shell (or -c SCRIPT: _script_of)
    long = frozenset({"user", "group", "supp-group", "shell", "whitelist-environment", "command"})
    return _skip_options(args, "ugGswc", long), False


def _unshare(args: list[str]) -> _Step:
    long = frozenset({"setuid", "setgid", "root", "wd", "map-user", "map-group", "map-users", "map-groups",
                      "propagation", "setgroups", "load-interp"})  # fmt: skip
    return _skip_options(args, "SGRwl", long), False


def _nsenter(args: list[str]) -> _Step:
    long = frozenset({"target", "setuid", "setgid", "env"})
    return _skip_options(args, "tSGN", long, attached="muinpUCTrw"), False


def _tracer(with_arg: str) -> Callable[[list[str]], _Step]:
    def step(args: list[str]) -> _Step:
        rest = _skip_options(args, with_arg, frozenset({"output", "trace", "signal", "attach", "user"}))
        return rest, False  # strace -o FILE writes files: not transparent

    return step


def _parallel(args: list[str]) -> str | None:
    """GNU parallel's commands as a script: its command (run by a shell), or with none, the arguments
    after ``:::`` (each a command)."""
    long = frozenset({"jobs", "sshlogin", "arg-file", "colsep", "delimiter", "results", "joblog", "env",
                      "workdir", "tmpdir", "timeout", "retries", "halt", "delay", "max-args"})  # fmt: skip
    rest = _skip_options(args, "aCdEIjlLnNPsSX", long)
    separators = (":::", "::::", ":::+", "::::+")
    cut = next((i for i, a in enumerate(rest) if a in separators), len(rest))
    arguments = [a for a in rest[cut:] if a not in separators]
    if rest[:cut]:
        return " ".join(rest[:cut] + arguments)  # parallel rm -rf ::: a b: rm -rf a b, as one command
    return "\n".join(arguments) or None


#: Programs that run another program: how to find it, and whether the wrapper is transparent (does not
#: change who runs it or its environment, so an allow glob for the inner command covers it).
_WRAPPERS: dict[str, Callable[[list[str]], _Step]] = {
    "sudo": _sudo,
    "doas": _doas,
    "env": _env,
    "chroot": _chroot,
    "nohup": _plain(),
    "nice": _nice,
    "timeout": _timeout,
    "time": _plain("fo"),
    "exec": _plain("a"),
    "command": _plain(),
    "builtin": _plain(),
    "xargs": _xargs,
    "setsid": _plain(),
    "stdbuf": _plain("ioe"),
    "ionice": _plain("cnp"),
    "busybox": _plain(),
    "chrt": _chrt,
    "taskset": _taskset,
    "flock": _flock,
    "watch": _plain("nq"),
    "runuser": _runuser,
    "unshare": _unshare,
    "nsenter": _nsenter,
    "strace": _tracer("abeEIoOpPsSuUX"),
    "ltrace": _tracer("aADeFlnopsuwx"),
}
