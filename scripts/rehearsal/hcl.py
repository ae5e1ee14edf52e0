"""Evaluate the Terraform expressions of ``terraform/*.tf`` (as python-hcl2 returns them) offline.

python-hcl2 parses the blocks but leaves expressions as text (``"${merge(local.a, local.b)}"``).
This module evaluates the subset of the Terraform language the project uses: literals, lists,
objects, ``for`` expressions, conditionals, arithmetic and comparison, string templates,
``var.*`` / ``local.*`` / ``each.*`` / ``count.*`` / ``path.module`` references and the built-in
functions below. A reference to a resource (``aws_security_group.role["api"].id``) evaluates to a
:class:`Ref` that names it, and anything only AWS knows (a data source, an attribute of a created
resource) to an :class:`Unknown`, so the wiring can be computed without an AWS account.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


class HclError(ValueError):
    """An expression this evaluator cannot parse or evaluate."""


@dataclass(frozen=True)
class Ref:
    """A reference to a managed resource: ``aws_security_group.role["api"].id``."""

    type: str
    name: str
    key: Any = None
    attr: str = ""

    def __str__(self) -> str:  # a placeholder that is safe inside a shell script
        key = "" if self.key is None else f"-{self.key}"
        return f"known-after-apply.{self.type}.{self.name}{key}.{self.attr}"


@dataclass(frozen=True)
class Unknown:
    """A value known only after ``terraform apply`` (or from a data source)."""

    text: str

    def __str__(self) -> str:
        return "known-after-apply." + re.sub(r"[^A-Za-z0-9_.-]", "-", self.text)


TOKEN = re.compile(r"""
    (?P<ws>\s+|\#[^\n]*|//[^\n]*)
  | (?P<number>\d+(\.\d+)?)
  | (?P<string>")
  | (?P<heredoc><<-?(?P<tag>[A-Z]+)\n)
  | (?P<op>=>|==|!=|<=|>=|&&|\|\||\.\.\.|[{}\[\]().,:?=!<>+\-*/%])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_-]*)
""", re.VERBOSE)


def _template_parts(text: str) -> list[str | tuple[str]]:
    """Split a template into literal strings and ``(expression,)`` tuples for each ``${...}``."""
    parts: list[str | tuple[str]] = []
    literal, i = "", 0
    while i < len(text):
        if text.startswith("$${", i):
            literal += "${"
            i += 3
        elif text.startswith("${", i):
            depth, j, quote = 1, i + 2, False
            while depth:
                if j >= len(text):
                    raise HclError(f"unterminated interpolation in {text!r}")
                c = text[j]
                if c == '"' and text[j - 1] != "\\":
                    quote = not quote
                elif not quote and c == "{":
                    depth += 1
                elif not quote and c == "}":
                    depth -= 1
                j += 1
            if literal:
                parts.append(literal)
            parts.append((text[i + 2:j - 1],))
            literal, i = "", j
        elif text.startswith("%{", i):
            raise HclError("template directives (%{...}) are not supported")
        else:
            literal += text[i]
            i += 1
    if literal:
        parts.append(literal)
    return parts


def _tokens(src: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(src):
        m = TOKEN.match(src, pos)
        if m is None:
            raise HclError(f"cannot read {src[pos:pos + 30]!r}")
        kind = m.lastgroup if m.lastgroup != "tag" else "heredoc"
        if m.group("ws"):
            pos = m.end()
            continue
        if m.group("string"):
            j, depth = m.end(), 0
            while j < len(src) and not (src[j] == '"' and depth == 0):
                if src.startswith("${", j):
                    depth += 1
                    j += 2
                    continue
                if src[j] == "}" and depth:
                    depth -= 1
                elif src[j] == "\\":
                    j += 1
                j += 1
            raw = src[m.end():j]
            out.append(("template", raw.encode().decode("unicode_escape") if "\\" in raw else raw))
            pos = j + 1
        elif m.group("heredoc"):
            tag = m.group("tag")
            end = re.compile(rf"^\s*{tag}\s*$", re.M).search(src, m.end())
            if end is None:
                raise HclError(f"unterminated heredoc {tag}")
            out.append(("template", src[m.end():end.start()]))
            pos = end.end()
        else:
            value = m.group(kind)
            out.append((kind, float(value) if kind == "number" and "." in value
                        else int(value) if kind == "number" else value))
            pos = m.end()
    out.append(("end", None))
    return out


class _Parser:
    """Recursive descent over the tokens; builds closures ``env -> value``."""

    def __init__(self, src: str) -> None:
        self.toks = _tokens(src)
        self.i = 0

    def peek(self, offset: int = 0) -> tuple[str, Any]:
        return self.toks[self.i + offset]

    def take(self, value: str | None = None) -> tuple[str, Any]:
        tok = self.toks[self.i]
        if value is not None and tok[1] != value:
            raise HclError(f"expected {value!r}, found {tok[1]!r}")
        self.i += 1
        return tok

    def at(self, value: str) -> bool:
        return self.peek()[1] == value and self.peek()[0] in ("op", "ident")

    def parse(self) -> Callable:
        node = self.expr()
        if self.peek()[0] != "end":
            raise HclError(f"unexpected {self.peek()[1]!r}")
        return node

    def expr(self) -> Callable:
        cond = self.binary(0)
        if self.at("?"):
            self.take()
            yes = self.expr()
            self.take(":")
            no = self.expr()
            return lambda env: yes(env) if cond(env) else no(env)
        return cond

    LEVELS = (("||",), ("&&",), ("==", "!="), ("<", ">", "<=", ">="), ("+", "-"), ("*", "/", "%"))
    OPS: dict[str, Callable[[Any, Any], Any]] = {
        "||": lambda a, b: a or b, "&&": lambda a, b: a and b, "==": lambda a, b: a == b,
        "!=": lambda a, b: a != b, "<": lambda a, b: a < b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b,
        ">=": lambda a, b: a >= b, "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
        "/": lambda a, b: a / b, "%": lambda a, b: a % b,
    }

    def binary(self, level: int) -> Callable:
        if level == len(self.LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek()[0] == "op" and self.peek()[1] in self.LEVELS[level]:
            fn = self.OPS[self.take()[1]]
            right = self.binary(level + 1)
            left = (lambda lf, rf, f: lambda env: f(lf(env), rf(env)))(left, right, fn)
        return left

    def unary(self) -> Callable:
        if self.at("!"):
            self.take()
            inner = self.unary()
            return lambda env: not inner(env)
        if self.at("-"):
            self.take()
            inner = self.unary()
            return lambda env: -inner(env)
        return self.postfix(self.primary())

    def postfix(self, node: Callable) -> Callable:
        while True:
            if self.at("."):
                self.take()
                kind, name = self.take()
                if kind == "number":  # tuple.0
                    node = (lambda n, k: lambda env: n(env)[k])(node, name)
                else:
                    node = (lambda n, a: lambda env: _attr(n(env), a))(node, name)
            elif self.at("["):
                self.take()
                index = self.expr()
                self.take("]")
                node = (lambda n, ix: lambda env: _index(n(env), ix(env)))(node, index)
            else:
                return node

    def primary(self) -> Callable:
        kind, value = self.take()
        if kind == "number":
            return lambda env: value
        if kind == "template":
            return _template(value)
        if kind == "ident":
            if value in ("true", "false"):
                return lambda env: value == "true"
            if value == "null":
                return lambda env: None
            if self.at("("):
                return self.call(value)
            return lambda env: env.lookup(value)
        if value == "(":
            inner = self.expr()
            self.take(")")
            return inner
        if value == "[":
            return self.list_or_for()
        if value == "{":
            return self.object_or_for()
        raise HclError(f"unexpected {value!r}")

    def call(self, name: str) -> Callable:
        self.take("(")
        args: list[Callable] = []
        expand = False
        while not self.at(")"):
            args.append(self.expr())
            if self.at("..."):
                self.take()
                expand = True
            if self.at(","):
                self.take()
        self.take(")")
        if name not in FUNCTIONS:
            raise HclError(f"function {name}() is not supported")
        fn = FUNCTIONS[name]

        def run(env):
            values = [a(env) for a in args]
            if expand:
                values = values[:-1] + list(values[-1])
            return fn(env, *values)
        return run

    def _for_header(self) -> tuple[str | None, str, Callable]:
        self.take("for")
        first = self.take()[1]
        second = None
        if self.at(","):
            self.take()
            second = self.take()[1]
        self.take("in")
        source = self.expr()
        self.take(":")
        return (first, second, source) if second else (None, first, source)

    def _condition(self, closing: str) -> Callable | None:
        if self.at("if"):
            self.take()
            cond = self.expr()
            self.take(closing)
            return cond
        self.take(closing)
        return None

    def list_or_for(self) -> Callable:
        if self.at("for"):
            key_name, value_name, source = self._for_header()
            body = self.expr()
            cond = self._condition("]")
            return lambda env: [body(scope) for scope in _for_scopes(env, source(env), key_name, value_name)
                                if cond is None or cond(scope)]
        items: list[Callable] = []
        while not self.at("]"):
            items.append(self.expr())
            if self.at(","):
                self.take()
        self.take("]")
        return lambda env: [item(env) for item in items]

    def object_or_for(self) -> Callable:
        if self.at("for"):
            key_name, value_name, source = self._for_header()
            key = self.expr()
            self.take("=>")
            body = self.expr()
            cond = self._condition("}")

            def build(env):
                out = {}
                for scope in _for_scopes(env, source(env), key_name, value_name):
                    if cond is None or cond(scope):
                        out[key(scope)] = body(scope)
                return out
            return build
        pairs: list[tuple[Callable, Callable]] = []
        while not self.at("}"):
            if self.peek()[0] == "ident" and self.peek(1)[1] in ("=", ":"):
                name = self.take()[1]
                key: Callable = (lambda k: lambda env: k)(name)
            else:
                key = self.expr()
            self.take()  # = or :
            pairs.append((key, self.expr()))
            if self.at(","):
                self.take()
        self.take("}")
        return lambda env: {k(env): v(env) for k, v in pairs}


def _template(text: str) -> Callable:
    parts = [p if isinstance(p, str) else _Parser(p[0]).parse() for p in _template_parts(text)]
    if len(parts) == 1 and not isinstance(parts[0], str):
        return parts[0]  # "${x}" keeps x's type
    return lambda env: "".join(p if isinstance(p, str) else _str(p(env)) for p in parts)


def _str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _for_scopes(env, source: Any, key_name: str | None, value_name: str):
    items = source.items() if isinstance(source, dict) else enumerate(source)
    for key, value in items:
        names = {value_name: value} | ({key_name: key} if key_name else {})
        yield env.child(names)


def _attr(value: Any, name: str) -> Any:
    if hasattr(value, "hcl_attr"):
        return value.hcl_attr(name)
    if isinstance(value, dict):
        if name not in value:
            raise HclError(f"no attribute {name!r}")
        return value[name]
    if isinstance(value, Ref):
        return Ref(value.type, value.name, value.key, name)
    if isinstance(value, Unknown):
        return Unknown(f"{value.text}.{name}")
    raise HclError(f"cannot take .{name} of {value!r}")


def _index(value: Any, key: Any) -> Any:
    if hasattr(value, "hcl_index"):
        return value.hcl_index(key)
    if isinstance(value, Ref):
        return Ref(value.type, value.name, key)
    if isinstance(value, Unknown):
        return Unknown(f"{value.text}[{key!r}]")
    if isinstance(value, list) and isinstance(key, float):
        key = int(key)
    return value[key]


def _cidrhost(env, prefix: str, num: int) -> str:
    net = ipaddress.ip_network(prefix, strict=False)
    return str(net.network_address + int(num)) if num >= 0 else str(net.broadcast_address + int(num) + 1)


def _templatefile(env, path: str, variables: dict) -> str:
    values = _Scope(None, variables)
    return _template(Path(path).read_text())(values)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "merge": lambda env, *maps: {k: v for m in maps for k, v in m.items()},
    "cidrhost": _cidrhost,
    "toset": lambda env, items: sorted(set(items), key=str),
    "tonumber": lambda env, v: float(v) if "." in str(v) else int(v),
    "tostring": lambda env, v: _str(v),
    "length": lambda env, v: len(v),
    "range": lambda env, *a: list(range(*(int(x) for x in a))),
    "join": lambda env, sep, items: sep.join(_str(i) for i in items),
    "split": lambda env, sep, s: s.split(sep),
    "slice": lambda env, items, start, end: items[int(start):int(end)],
    "setproduct": lambda env, a, b: [[x, y] for x in a for y in b],
    "keys": lambda env, m: sorted(m),
    "values": lambda env, m: [m[k] for k in sorted(m)],
    "contains": lambda env, items, v: v in items,
    "concat": lambda env, *lists: [x for lst in lists for x in lst],
    "alltrue": lambda env, items: all(items),
    "floor": lambda env, v: math.floor(v),
    "lookup": lambda env, m, k, default=None: m.get(k, default),
    "templatefile": _templatefile,
}


class _Scope:
    """Names visible to an expression: ``var``, ``local``, ``each``, resources, and for-loop names."""

    def __init__(self, parent: "_Scope | None", names: dict[str, Any]) -> None:
        self.parent = parent
        self.names = names

    def child(self, names: dict[str, Any]) -> "_Scope":
        return _Scope(self, names)

    def lookup(self, name: str) -> Any:
        scope: _Scope = self
        while True:
            if name in scope.names:
                return scope.names[name]
            if scope.parent is None:
                return scope.root_lookup(name)
            scope = scope.parent

    def root_lookup(self, name: str) -> Any:
        raise HclError(f"unknown name {name!r}")


def evaluate(value: Any, scope: _Scope) -> Any:
    """Evaluate what python-hcl2 returned for an attribute: nested dicts/lists, ``"${...}"`` text,
    quoted literals (``'"nginx"'``) and plain numbers and booleans."""
    if isinstance(value, dict):
        return {_unquote(k): evaluate(v, scope) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [evaluate(v, scope) for v in value]
    if isinstance(value, str):
        if len(value) >= 2 and value[0] == value[-1] == '"':
            return _template(value[1:-1])(scope)
        return _template(value)(scope)
    return value


def _unquote(key: str) -> str:
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == '"' else key


Scope = _Scope
