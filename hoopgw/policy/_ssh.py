"""SSH policy classes: exec commands, file operations, forwards and transfers (docs/SSH.md).

An exec command is split into simple commands (:func:`split_command`), each matched against the command
classes of ``[ssh] command_classes`` and the ``exec:GLOB`` globs the caller's policies name; the result
is a set of class names for ``SessionPolicy.decide_classes``. Globs are shell globs matched
case-sensitively against the whole text, ``*`` crossing spaces and ``/`` (``fnmatch.fnmatchcase``).
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
#: with the program reduced to its basename (``sudo -u root rm -rf /`` -> the sudo form, then ``rm``).
_Chain = tuple[tuple[str, ...], ...]

_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\+?=")
#: Words that start a compound command or separate its parts: dropped in front of a command.
_RESERVED = frozenset({"!", "{", "}", "if", "then", "elif", "else", "fi", "while", "until", "do",
                       "done", "esac", "coproc", "in"})  # fmt: skip
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "posh", "yash"})
_MAX_WRAPPERS = 16
#: Longer exec commands are not split (bounded work per request): they carry every class.
MAX_COMMAND_LENGTH = 64 * 1024
#: Output redirections to these are not writes.
_HARMLESS_TARGETS = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty"})


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
    ``exec_globs`` that matches it, and plain ``exec`` unless the exec globs cover it. A simple command
    seen through a wrapper that changes who or how it runs (``sudo``, ``env``/``VAR=value``, ``su``,
    ``doas``, ``chroot``) is covered only when every form matches (``sudo rm x`` and ``rm x``); one with
    an output redirection (other than to ``/dev/null``) only by a glob that contains ``>``, one with a
    ``..`` path part only by a glob that contains ``..`` (paths are also matched normalized, which can
    only add classes: ``cat /var/log/../../etc/shadow`` is ``cat /etc/shadow`` too). The whole
    string is matched too (a whole-string match adds classes, it never removes ``exec``). An empty or
    unparseable command always carries ``exec``; one longer than ``MAX_COMMAND_LENGTH`` characters
    carries ``exec`` and every command class.
    """
    globs = tuple(dict.fromkeys(exec_globs))
    classes: set[str] = set()
    if len(command) > MAX_COMMAND_LENGTH:
        # too long to split at a bounded cost: it may be anything
        classes.update(("exec", *command_classes))
        classes.update(f"exec:{g}" for g in globs if fnmatch.fnmatchcase(command, g))
        return frozenset(classes)
    chains, unparseable = _chains_of(command)
    if unparseable or not chains:
        classes.add("exec")
    for chain in chains:
        covered = True
        for form in chain:
            text = " ".join(form)
            matched = [g for g in globs if fnmatch.fnmatchcase(text, g)]
            classes.update(f"exec:{g}" for g in matched)
            classes.update(_command_classes_of(text, command_classes))
            normalized = " ".join(_normpath(w) for w in form)
            if normalized != text:  # cat /var/log/../../etc/shadow is also cat /etc/shadow
                classes.update(f"exec:{g}" for g in globs if fnmatch.fnmatchcase(normalized, g))
                classes.update(_command_classes_of(normalized, command_classes))
            if _writes(form):
                matched = [g for g in matched if ">" in g]
            if any(".." in w.split("/") for w in form[1:]):
                matched = [g for g in matched if ".." in g]
            covered = covered and bool(matched)
        if not covered:
            classes.add("exec")
    classes.update(_command_classes_of(command, command_classes))
    classes.update(f"exec:{g}" for g in globs if fnmatch.fnmatchcase(command, g))
    return frozenset(classes)


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


def _rsync(args: list[str]) -> Transfer | None:
    if not args or args[0] != "--server":
        return None
    sender = False
    recursive = False
    rest = args[1:]
    for i, arg in enumerate(rest):
        if arg == ".":
            paths = tuple(rest[i + 1 :])
            return Transfer("rsync", not sender, paths, recursive) if paths else None
        if arg == "--sender":
            sender = True
        elif arg == "--recursive":
            recursive = True
        elif arg.startswith("-") and not arg.startswith("--"):
            recursive = recursive or "r" in arg[1:].partition("e")[0]
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
    """The chains of one lexed simple command (a shell script inside may give several)."""
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
        if not words:
            break
        program = _program(words[0])
        script: str | None = None
        if program in _SHELLS:
            script = _shell_script(words[1:])
        elif program == "eval":
            script = " ".join(words[1:])
        elif program == "su":
            script = _option_value(words[1:], ("-c", "--command"))
            if script is not None:
                forms.append(_norm(words))
        if script is not None:
            prefix = tuple(forms)
            return extra + [prefix + chain for chain in _split(script, depth + 1)]
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
    return extra + ([tuple(forms)] if forms else [])


def _normpath(word: str) -> str:
    """A word holding a path with ``.``, ``..`` or ``//`` parts, normalized; any other word as it is."""
    if "/" not in word or "$" in word or "`" in word:
        return word
    if "//" not in word and not any(part in (".", "..") for part in word.split("/")):
        return word
    return posixpath.normpath(word)


def _writes(form: tuple[str, ...]) -> bool:
    """True when ``form`` redirects output to a file (not /dev/null, not another descriptor)."""
    for i, word in enumerate(form):
        if not is_redirect(word) or ">" not in word:
            continue
        target = form[i + 1] if i + 1 < len(form) else ""
        if word.endswith(">&") and (target.isdigit() or target == "-"):
            continue
        if target in _HARMLESS_TARGETS:
            continue
        return True
    return False


def _command_classes_of(text: str, command_classes: Mapping[str, Sequence[str]]) -> set[str]:
    return {name for name, globs in command_classes.items() if _any_glob(tuple(globs)).match(text)}


@functools.lru_cache(maxsize=1024)
def _any_glob(globs: tuple[str, ...]) -> re.Pattern[str]:
    """One regular expression matching what any of ``globs`` matches (as ``fnmatch.fnmatchcase``)."""
    if not globs:
        return re.compile(r"(?!)")
    return re.compile("|".join(fnmatch.translate(g) for g in globs))


def _shell_script(args: list[str]) -> str | None:
    """The SCRIPT of ``sh [options] -c SCRIPT …`` (None: the shell reads a file or stdin)."""
    command = False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--" or arg == "-":
            i += 1
            break
        if arg.startswith(("-", "+")) and len(arg) > 1 and not arg.startswith("--"):
            if "c" in arg[1:]:
                command = True
            if arg[1:].endswith("o") or arg[1:].endswith("O"):
                i += 1  # -o OPTION
            i += 1
        elif arg.startswith("--"):
            i += 2 if arg in ("--rcfile", "--init-file") else 1
        else:
            break
    if command and i < len(args):
        return args[i]
    return None


def _option_value(args: list[str], names: tuple[str, ...]) -> str | None:
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if name.startswith("--") and arg.startswith(name + "="):
                return arg[len(name) + 1 :]
            if not name.startswith("--") and arg.startswith(name) and len(arg) > len(name):
                return arg[len(name) :]
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


def _sudo(args: list[str]) -> _Step:
    long = frozenset({"user", "group", "chdir", "close-from", "host", "prompt", "chroot", "role", "type",
                      "command-timeout", "other-user", "login-class", "auth-type"})  # fmt: skip
    return _skip_options(args, "aCcDgpRrTtUu", long, attached="h"), False


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
}
