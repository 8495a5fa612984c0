"""Names from a model file, made safe for the generated C.

Tensor names come from an untrusted file. In generated C they appear only as

* identifiers made by :func:`c_identifier`: ASCII letters, digits and ``_``, never a C keyword,
  a standard macro or type, a reserved identifier (``__x``, ``_X``) or one of our own prefixes,
  at most :data:`MAX_IDENTIFIER` characters, unique case-insensitively among their kind (the size
  macros are upper-cased, so ``x`` and ``X`` must not both exist);
* comment text made by :func:`comment_text`: printable ASCII with ``*/`` and ``/*`` broken, bounded.
"""

from __future__ import annotations

import re

#: C99 guarantees 63 significant initial characters for internal identifiers.
MAX_IDENTIFIER = 48

C_KEYWORDS = frozenset("""
auto break case char const continue default do double else enum extern float for goto if inline
int long register restrict return short signed sizeof static struct switch typedef union unsigned
void volatile while _Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary _Noreturn
_Static_assert _Thread_local alignas alignof bool constexpr false nullptr static_assert
thread_local true typeof typeof_unqual asm fortran
""".split())
#: Macros and typedefs from the headers the generated C and the harness include.
C_RESERVED = frozenset("""
NULL EOF errno assert offsetof stdin stdout stderr main memcpy memset memmove
int8_t int16_t int32_t int64_t uint8_t uint16_t uint32_t uint64_t intptr_t uintptr_t size_t
ptrdiff_t INT8_MIN INT8_MAX INT16_MIN INT16_MAX INT32_MIN INT32_MAX UINT8_MAX UINT16_MAX
UINT32_MAX SIZE_MAX max min MIN MAX inputs outputs unused
""".split())
_OWN_PREFIXES = ("tvmgen_", "dtmm_", "tvm_", "__")


def _is_reserved(ident: str) -> bool:
    lower = ident.lower()
    return (ident in C_KEYWORDS or ident in C_RESERVED or ident.upper() in C_RESERVED
            or lower in {k.lower() for k in C_KEYWORDS}
            or lower.startswith(_OWN_PREFIXES) or re.match(r"_[A-Z_]", ident) is not None)


def c_identifier(name: str, taken: set | None = None, fallback: str = "tensor") -> str:
    """A safe, unique C identifier derived from ``name``; added to ``taken``.

    Parameters
    ----------
    name : str
        Any string (a tensor name from a model file may hold anything).
    taken : set, optional
        Identifiers already used in the same scope (compared case-insensitively).
    fallback : str
        Base used when nothing of ``name`` survives.
    """
    ident = re.sub(r"[^A-Za-z0-9_]+", "_", str(name)).strip("_")[:MAX_IDENTIFIER] or fallback
    if ident[0].isdigit() or _is_reserved(ident):
        ident = "t_" + ident
    ident = ident[:MAX_IDENTIFIER]
    if taken is None:
        return ident
    lowered = {t.lower() for t in taken}
    out, k = ident, 1
    while out.lower() in lowered:
        out, k = f"{ident}_{k}", k + 1
    taken.add(out)
    return out


def comment_text(name: str, limit: int = 64) -> str:
    """``name`` as text that is safe inside a C block comment: quoted, printable ASCII only
    (others as escapes), no ``*/`` or ``/*``, at most about ``limit`` characters."""
    text = str(name)
    clipped = len(text) > limit
    text = text[:limit].encode("ascii", "backslashreplace").decode("ascii")
    text = "".join(c if 32 <= ord(c) < 127 else f"\\x{ord(c):02x}" for c in text)
    while "*/" in text or "/*" in text:  # "*//*" -> "* // *" needs a second pass
        text = text.replace("*/", "* /").replace("/*", "/ *")
    return "'" + text + ("...'" if clipped else "'")

