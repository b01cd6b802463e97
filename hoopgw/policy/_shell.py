"""A best-effort POSIX shell lexer for policy: a command string -> its simple commands (lists of words).

Quoting is removed (``'…'``, ``"…"``, ``$'…'`` with its escapes, backslashes), operators split commands
(``;`` ``&&`` ``||`` ``|`` ``&`` newlines, ``(`` ``)``), and command substitutions (``$(…)``, backticks,
``<(…)``, ``>(…)``, also inside double quotes and ``${…}``) are lexed too: their commands are returned as
commands of their own, while the word that holds them keeps the raw text. Unquoted brace expansion is
done as bash does it (``{rm,-rf,x}`` is ``["rm", "-rf", "x"]``, ``{a..c}`` is ``["a", "b", "c"]``).
Redirection operators stay words (``ls > x`` is ``["ls", ">", "x"]``). ``#`` is an ordinary character
and heredoc bodies are lexed as commands: both err on the side of seeing more commands. Anything the
lexer cannot follow (an unbalanced quote or substitution, nesting deeper than ``MAX_DEPTH``, braces too
many or too large to expand at a bounded cost) raises :class:`Unparseable`; a brace expansion gives at
most ``MAX_BRACE_WORDS`` words (its first ones: the program word is always right).
"""

from __future__ import annotations

import re
from itertools import islice, pairwise

MAX_DEPTH = 8
#: A word's brace expansion is cut to its first words past this many (bounded work per word).
MAX_BRACE_WORDS = 256
#: A word with more unquoted braces or characters than this around a brace expansion is beyond the lexer.
_MAX_BRACES = 32
_MAX_BRACE_CHARS = 2048
#: Brace expansions of one command string give at most this many characters in all.
_MAX_EXPANDED_CHARS = 256 * 1024
_SEPARATORS = frozenset(";&|()\n")
_WORD_END = frozenset(" \t;&|()<>\n")
_REDIRECTS = ("&>>", "&>", ">>", ">|", ">&", "<<<", "<<-", "<<", "<&", "<>", ">", "<")
_C_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "e": "\x1b",
    "E": "\x1b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "?": "?",
}


_SEQUENCE = re.compile(r"(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?\Z|([A-Za-z])\.\.([A-Za-z])(?:\.\.(-?\d+))?\Z")
#: A word being lexed: its characters, each with True when it is unquoted (so ``{ , }`` are special).
_Chars = list[tuple[str, bool]]


class Unparseable(ValueError):
    """The command string is beyond this lexer (unbalanced quotes, too deep)."""


def is_redirect(word: str) -> bool:
    """True for a redirection operator as :func:`lex` leaves it (``>``, ``2>>``, ``&>``, ``<`` …)."""
    return word.lstrip("0123456789").startswith(_REDIRECTS) and word.strip("0123456789&<>|-") == ""


def lex(text: str, depth: int = 0) -> list[list[str]]:
    """The simple commands of ``text``, substitutions' commands included (raises Unparseable)."""
    if depth > MAX_DEPTH:
        raise Unparseable("nested too deeply")
    lexer = _Lexer(text, depth)
    lexer.run(None)
    return lexer.out


class _Lexer:
    def __init__(self, text: str, depth: int) -> None:
        self.text = text
        self.pos = 0
        self.depth = depth
        self.out: list[list[str]] = []
        self.expanded = 0

    def _peek(self, offset: int = 0) -> str:
        i = self.pos + offset
        return self.text[i] if i < len(self.text) else ""

    def run(self, stop: str | None) -> None:
        """Lex commands up to the end, or up to the unmatched ``)`` when ``stop`` is ``")"``."""
        words: list[str] = []
        parens = 0
        while True:
            c = self._peek()
            if not c:
                if stop is not None:
                    raise Unparseable("unbalanced substitution")
                break
            if c in " \t":
                self.pos += 1
            elif c == "\\" and self._peek(1) == "\n":
                self.pos += 2
            elif c == ")" and stop == ")" and parens == 0:
                self.pos += 1
                break
            elif c in "<>" and self._peek(1) == "(":
                self.pos += 2
                start = self.pos - 2
                self._nested()
                words.append(self.text[start : self.pos])
            elif c in "<>" or (c == "&" and self._peek(1) == ">"):
                words.append(self._redirect())
            elif c in _SEPARATORS:
                if c == "(":
                    parens += 1
                elif c == ")" and parens:
                    parens -= 1
                self.pos += 1
                if words:
                    self.out.append(words)
                    words = []
            else:
                expanded = self._word()
                if len(expanded) == 1 and expanded[0].isdigit() and self._peek() in ("<", ">"):
                    # 2>/dev/null: the descriptor belongs to the operator
                    expanded = [expanded[0] + self._redirect()]
                words.extend(expanded)
        if words:
            self.out.append(words)

    def _redirect(self) -> str:
        for op in _REDIRECTS:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return op
        raise AssertionError("not at a redirection")  # pragma: no cover - callers check

    def _nested(self) -> None:
        """Lex a substitution body up to its ``)``; its commands join ``out``."""
        if self.depth + 1 > MAX_DEPTH:
            raise Unparseable("nested too deeply")
        self.depth += 1
        self.run(")")
        self.depth -= 1

    def _word(self) -> list[str]:
        """One word, quoting removed; several when it holds an unquoted brace expansion."""
        chars: _Chars = []
        braces = False
        while (c := self._peek()) and c not in _WORD_END:
            if c == "\\":
                nxt = self._peek(1)
                self.pos += 2
                if nxt != "\n":
                    chars.append((nxt, False))
                continue
            if c == "'":
                end = self.text.find("'", self.pos + 1)
                if end < 0:
                    raise Unparseable("unbalanced quote")
                part = self.text[self.pos + 1 : end]
                self.pos = end + 1
            elif c == '"':
                self.pos += 1
                part = self._dquote()
            elif c == "$":
                part = self._dollar()
            elif c == "`":
                part = self._backtick()
            else:
                braces = braces or c == "{"
                chars.append((c, True))
                self.pos += 1
                continue
            chars.extend((p, False) for p in part)
        if not braces:
            return ["".join(ch for ch, _ in chars)]
        words = _expand_braces(chars)
        self.expanded += sum(len(w) for w in words)
        if self.expanded > _MAX_EXPANDED_CHARS:
            raise Unparseable("brace expansions too large")
        return words

    def _dquote(self) -> str:
        parts: list[str] = []
        while True:
            c = self._peek()
            if not c:
                raise Unparseable("unbalanced quote")
            if c == '"':
                self.pos += 1
                return "".join(parts)
            if c == "\\":
                nxt = self._peek(1)
                self.pos += 2
                if nxt in ('"', "\\", "$", "`"):
                    parts.append(nxt)
                elif nxt != "\n":
                    parts.append("\\" + nxt)
            elif c == "$" and self._peek(1) in ("(", "{"):
                parts.append(self._dollar())
            elif c == "`":
                parts.append(self._backtick())
            else:
                parts.append(c)
                self.pos += 1

    def _dollar(self) -> str:
        start = self.pos
        nxt = self._peek(1)
        if nxt == "(" and self._peek(2) == "(":
            self.pos += 3
            self._arithmetic()
        elif nxt == "(":
            self.pos += 2
            self._nested()
        elif nxt == "{":
            self.pos += 2
            self._brace()
        elif nxt == "'":
            self.pos += 2
            return self._ansi_c()
        else:
            self.pos += 1
            return "$"
        return self.text[start : self.pos]

    def _arithmetic(self) -> None:
        """``$((…))``: skip to the closing parentheses, lexing substitutions inside."""
        level = 1
        while True:
            c = self._peek()
            if not c:
                raise Unparseable("unbalanced $((")
            if c == "$" and self._peek(1) in ("(", "{"):
                self._dollar()
            elif c == "`":
                self._backtick()
            else:
                self.pos += 1
                if c == "(":
                    level += 1
                elif c == ")":
                    level -= 1
                    if level == 0:
                        if self._peek() != ")":
                            raise Unparseable("unbalanced $((")
                        self.pos += 1
                        return

    def _brace(self) -> None:
        """``${…}``: skip to the matching brace, lexing substitutions inside."""
        level = 0
        while True:
            c = self._peek()
            if not c:
                raise Unparseable("unbalanced ${")
            if c == "}":
                self.pos += 1
                if level == 0:
                    return
                level -= 1
            elif c == "\\":
                self.pos += 2
            elif c == "'":
                end = self.text.find("'", self.pos + 1)
                if end < 0:
                    raise Unparseable("unbalanced quote")
                self.pos = end + 1
            elif c == '"':
                self.pos += 1
                self._dquote()
            elif c == "$" and self._peek(1) == "{":
                self.pos += 2
                level += 1
            elif c == "$" and self._peek(1) == "(":
                self._dollar()
            elif c == "`":
                self._backtick()
            else:
                self.pos += 1

    def _backtick(self) -> str:
        start = self.pos
        self.pos += 1
        body: list[str] = []
        while True:
            c = self._peek()
            if not c:
                raise Unparseable("unbalanced backtick")
            if c == "`":
                self.pos += 1
                break
            if c == "\\" and self._peek(1) in ("$", "`", "\\"):
                body.append(self._peek(1))
                self.pos += 2
            else:
                body.append(c)
                self.pos += 1
        self.out.extend(lex("".join(body), self.depth + 1))
        return self.text[start : self.pos]

    def _ansi_c(self) -> str:
        """The body of ``$'…'`` with its escapes decoded (the opening quote already consumed)."""
        parts: list[str] = []
        while True:
            c = self._peek()
            if not c:
                raise Unparseable("unbalanced quote")
            self.pos += 1
            if c == "'":
                return "".join(parts)
            if c != "\\":
                parts.append(c)
                continue
            e = self._peek()
            self.pos += 1
            if e in _C_ESCAPES:
                parts.append(_C_ESCAPES[e])
            elif e in "01234567" and e:
                parts.append(chr(int(self._digits(e, "01234567", 2), 8)))
            elif e in ("x", "u", "U") and e:
                width = {"x": 2, "u": 4, "U": 8}[e]
                digits = self._digits("", "0123456789abcdefABCDEF", width)
                parts.append(chr(min(int(digits, 16), 0x10FFFF)) if digits else "\\" + e)
            elif e == "c" and self._peek():
                parts.append(chr(ord(self._peek()) & 0x1F))
                self.pos += 1
            elif e:
                parts.append("\\" + e)
            else:
                raise Unparseable("unbalanced quote")

    def _digits(self, first: str, alphabet: str, more: int) -> str:
        out = first
        while more and self._peek() and self._peek() in alphabet:
            out += self._peek()
            self.pos += 1
            more -= 1
        return out


def _expand_braces(chars: _Chars) -> list[str]:
    """Bash brace expansion of one word: ``a{b,c}d`` -> ``abd acd``, ``{1..3}`` -> ``1 2 3`` (empty results
    dropped, at most ``MAX_BRACE_WORDS``)."""
    opens = sum(1 for c in chars if c == ("{", True))
    if len(chars) > _MAX_BRACE_CHARS or opens > _MAX_BRACES:
        raise Unparseable("brace expansion too large")
    match: dict[int, int] = {}
    commas: dict[int, list[int]] = {}
    stack: list[int] = []
    for i, (ch, special) in enumerate(chars):
        if not special:
            continue
        if ch == "{":
            stack.append(i)
            commas[i] = []
        elif ch == "," and stack:
            commas[stack[-1]].append(i)
        elif ch == "}" and stack:
            match[stack.pop()] = i
    tree = _BraceTree(chars, match, commas)
    return [w for w in tree.expand(0, len(chars)) if w]


class _BraceTree:
    def __init__(self, chars: _Chars, match: dict[int, int], commas: dict[int, list[int]]) -> None:
        self.chars = chars
        self.match = match
        self.commas = commas

    def expand(self, start: int, end: int) -> list[str]:
        """The words ``chars[start:end]`` expands to."""
        out = [""]
        literal: list[str] = []
        i = start
        while i < end:
            ch, special = self.chars[i]
            close = self.match.get(i, end) if special and ch == "{" else end
            alternatives = self._alternatives(i, close) if close < end else None
            if alternatives is None:
                literal.append(ch)
                i += 1
                continue
            text = "".join(literal)
            literal = []
            out = list(islice((o + text + a for o in out for a in alternatives), MAX_BRACE_WORDS))
            i = close + 1
        text = "".join(literal)
        return [o + text for o in out]

    def _alternatives(self, open_: int, close: int) -> list[str] | None:
        """What the braces at ``open_``/``close`` expand to (None: they are literal braces)."""
        commas = self.commas[open_]
        if not commas:
            return _sequence(self.chars[open_ + 1 : close])
        bounds = [open_, *commas, close]
        out: list[str] = []
        for a, b in pairwise(bounds):
            out.extend(self.expand(a + 1, b))
            if len(out) >= MAX_BRACE_WORDS:
                break
        return out[:MAX_BRACE_WORDS]


def _sequence(body: _Chars) -> list[str] | None:
    """``1..5``, ``a..e``, ``01..10..3``: the words of a sequence expression (None: not one)."""
    if not all(special for _, special in body):
        return None
    m = _SEQUENCE.match("".join(ch for ch, _ in body))
    if m is None:
        return None
    if m.group(4):
        first, last = ord(m.group(4)), ord(m.group(5))
        step = abs(int(m.group(6) or 1)) or 1
        span = range(first, last + 1, step) if first <= last else range(first, last - 1, -step)
        return [chr(c) for c in span[:MAX_BRACE_WORDS]]
    a, b = m.group(1), m.group(2)
    first, last = int(a), int(b)
    step = abs(int(m.group(3) or 1)) or 1
    span = range(first, last + 1, step) if first <= last else range(first, last - 1, -step)
    padded = any(len(x.lstrip("-")) > 1 and x.lstrip("-").startswith("0") for x in (a, b))
    width = max(len(a), len(b)) if padded else 0
    return [f"{n:0{width}d}" if width else str(n) for n in span[:MAX_BRACE_WORDS]]
