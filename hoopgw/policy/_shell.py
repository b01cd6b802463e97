"""A best-effort POSIX shell lexer for policy: a command string -> its simple commands (lists of words).

Quoting is removed (``'…'``, ``"…"``, ``$'…'`` with its escapes, backslashes), operators split commands
(``;`` ``&&`` ``||`` ``|`` ``&`` newlines, ``(`` ``)``), and command substitutions (``$(…)``, backticks,
``<(…)``, ``>(…)``, also inside double quotes and ``${…}``) are lexed too: their commands are returned as
commands of their own, while the word that holds them keeps the raw text. Redirection operators stay
words (``ls > x`` is ``["ls", ">", "x"]``). ``#`` is an ordinary character and heredoc bodies are lexed as
commands: both err on the side of seeing more commands. Anything the lexer cannot follow (an unbalanced
quote or substitution, nesting deeper than ``MAX_DEPTH``) raises :class:`Unparseable`.
"""

from __future__ import annotations

MAX_DEPTH = 8
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
                word = self._word()
                if word.isdigit() and self._peek() in ("<", ">"):
                    word += self._redirect()  # 2>/dev/null: the descriptor belongs to the operator
                words.append(word)
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

    def _word(self) -> str:
        parts: list[str] = []
        while (c := self._peek()) and c not in _WORD_END:
            if c == "\\":
                nxt = self._peek(1)
                self.pos += 2
                if nxt != "\n":
                    parts.append(nxt)
            elif c == "'":
                end = self.text.find("'", self.pos + 1)
                if end < 0:
                    raise Unparseable("unbalanced quote")
                parts.append(self.text[self.pos + 1 : end])
                self.pos = end + 1
            elif c == '"':
                self.pos += 1
                parts.append(self._dquote())
            elif c == "$":
                parts.append(self._dollar())
            elif c == "`":
                parts.append(self._backtick())
            else:
                parts.append(c)
                self.pos += 1
        return "".join(parts)

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
