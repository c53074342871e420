"""The Python library's mutation score, from the last `mutmut run` (make mutation).

    python tests/mutation_score.py [--min 90]

Reads mutmut's verdicts (mutants/**/*.py.meta), counts a mutant killed when a selected test
failed, timed out or crashed on it, and scores killed / (all - equivalent). Equivalent mutants
(no test can tell them from the original) are listed in tests/mutation_equivalent.txt, one line
each: `<mutant name>: <reason> || <the mutated line>` (`!<line>` for a mutant that deletes it).
mutmut numbers a function's mutants in source order, so an edit of the function gives a listed
name to another mutation: the mutated line pins the entry to its mutation, and an entry whose
mutant no longer has that line is stale (reported, and its mutant scored as what it is). Prints the score per file and every surviving
mutant (each one a test to write or an equivalence to state); exits 1 below --min, when mutants
were not run, or when an entry is stale.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MUTANTS = os.path.join(ROOT, "mutants")
EQUIVALENT = os.path.join(ROOT, "tests", "mutation_equivalent.txt")
KILLED = {1: "killed", 3: "killed", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout"}
KILLED.update({-11: "crash", -9: "crash", -6: "crash"})


MUTANT_DEF = re.compile(r"\s*def (\S+?__mutmut_\d+)\(")


def mutant_sources(path: str) -> dict[str, str]:
    """{mutant function name: its source} of one file mutmut wrote, each def line under the
    original function's name, as the mutated line in `mutmut show` has it. A mutant ends at the
    next definition at its depth (not at the `):` of a long signature)."""
    with open(path) as f:
        lines = f.read().split("\n")
    out, name, indent, body = {}, None, 0, []
    for line in lines + ["def end_of_file():"]:
        depth = len(line) - len(line.lstrip())
        if name and depth <= indent and line.lstrip().startswith(("def ", "class ", "@")):
            out[name] = "\n".join(body)
            name = None
        m = MUTANT_DEF.match(line)
        if m:
            name, indent = m.group(1), depth
            original = name.split("__mutmut_")[0].split("ǁ")[-1].removeprefix("x_")
            body = [line.replace(f"def {name}(", f"def {original}(")]
        elif name:
            body.append(line)
    return out


def verdicts() -> dict[str, tuple[str, int | None, str]]:
    """{mutant name: (source file, exit code of its test run, its source)}, for the mutants that
    exist: mutmut keeps the verdicts of a changed function's former mutants in its .meta files."""
    out = {}
    for base, _, files in os.walk(MUTANTS):
        for f in files:
            if f.endswith(".py.meta"):
                path = os.path.join(base, f)
                with open(path) as fh:
                    codes = json.load(fh)["exit_code_by_key"]
                src = os.path.relpath(path, MUTANTS)[: -len(".meta")]
                sources = mutant_sources(path[: -len(".meta")])
                for k, v in codes.items():
                    body = sources.get(k.rsplit(".", 1)[1])
                    if body is not None:
                        out[k] = (src, v, body)
    return out


def equivalent() -> dict[str, tuple[str, str]]:
    """{mutant name: (reason, mutated line)}."""
    eq = {}
    if os.path.exists(EQUIVALENT):
        with open(EQUIVALENT) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if line and not line.startswith("#"):
                    name, sep, rest = line.partition(":")
                    why, sep2, code = rest.partition(" || ")
                    if not sep or not why.strip() or not sep2 or not code.strip():
                        raise SystemExit(
                            f"{EQUIVALENT}:{n}: expected `<mutant name>: <reason> || <mutated line>`, got {line!r}"
                        )
                    eq[name.strip()] = (why.strip(), code.strip())
    return eq


def _squash(code: str) -> str:
    return "".join(code.split())


def _pinned(pin: str, body: str) -> bool:
    """Whether the mutant's source has its listed line (`!line`: has not, for a deletion)."""
    if pin.startswith("!"):
        return _squash(pin[1:]) not in _squash(body)
    return _squash(pin) in _squash(body)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--min", type=float, default=90.0, help="least score in percent")
    p.add_argument("--partial", action="store_true", help="score what has run so far (an unfinished run)")
    args = p.parse_args(argv)
    got, eq = verdicts(), equivalent()
    if not got:
        print("no mutmut results under mutants/: run `make mutation` first", file=sys.stderr)
        return 2
    unrun = [k for k, (_, code, _) in got.items() if code is None]
    stale = sorted(set(eq) - set(got))
    # a listed name whose mutant no longer makes the listed change: scored as what it is
    moved = sorted(n for n in set(eq) & set(got) if not _pinned(eq[n][1], got[n][2]))
    for n in moved:
        del eq[n]
    per_file = {}
    survivors, wrongly_equivalent = [], []
    for name, (src, code, _) in sorted(got.items()):
        c = per_file.setdefault(src, Counter())
        if code is None:
            c["not run"] += 1
        elif name in eq and code in KILLED:
            # a test tells it from the original after all: counted killed, its line is wrong
            c["killed"] += 1
            wrongly_equivalent.append(name)
        elif name in eq:
            c["equivalent"] += 1
        elif code in KILLED:
            c["killed"] += 1
        else:
            c["survived"] += 1
            survivors.append((name, src, code))
    print(f"{'file':<40}{'mutants':>9}{'not run':>9}{'killed':>8}{'equiv.':>8}{'survived':>10}{'score':>8}")
    total = Counter()
    for src, c in sorted(per_file.items()):
        total.update(c)
        n = c["killed"] + c["survived"]
        print(
            f"{src:<40}{sum(c.values()):>9}{c['not run']:>9}{c['killed']:>8}{c['equivalent']:>8}{c['survived']:>10}"
            f"{(100 * c['killed'] / n if n else 100):>7.1f}%"
        )
    n = total["killed"] + total["survived"]
    score = 100 * total["killed"] / n if n else 100.0
    print(
        f"{'all':<40}{sum(total.values()):>9}{total['not run']:>9}{total['killed']:>8}{total['equivalent']:>8}{total['survived']:>10}"
        f"{score:>7.1f}%"
    )
    for name, src, code in survivors:
        print(f"survived: {name} ({src}, exit code {code}): `mutmut show {name}`")
    for name in wrongly_equivalent:
        print(f"killed, though listed equivalent: {name} (drop its line from {os.path.basename(EQUIVALENT)})")
    if stale:
        print(f"note: {len(stale)} listed equivalent mutant(s) no longer exist: {', '.join(stale[:5])}")
    for n in moved:
        print(f"stale: {n} no longer mutates its listed line (the function changed): re-check and re-list it")
    if unrun and not args.partial:
        print(f"{len(unrun)} mutant(s) not run yet: run `make mutation` to the end", file=sys.stderr)
        return 1
    if moved and not args.partial:
        print(f"{len(moved)} stale line(s) in {os.path.basename(EQUIVALENT)}", file=sys.stderr)
        return 1
    if score < args.min:
        print(f"mutation score {score:.1f}% is below {args.min}%", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
