#!/usr/bin/env python3
"""Every link in the repository's Markdown resolves, and none leads outside the repository.

For each *.md file (outside target/, .cache/ and .git/):
- a relative link must name a file or folder that exists inside the repository;
- a `#anchor` (alone, or after a Markdown file) must match a heading of that file, with
  GitHub's rule for heading anchors (lower case, punctuation dropped, spaces to hyphens,
  repeats numbered -1, -2, ...);
- a link to another site (http:, https:, mailto:, ...) is refused: the documentation travels
  with the code and must stand on its own. Name an outside page in plain text or a code span.
Links inside code spans and fenced code blocks are not links and are ignored.

Usage: python3 scripts/check-links.py [ROOT]   (exit 1 and one line per broken link)
"""

import re
import sys
from pathlib import Path

SKIP_DIRS = {"target", ".cache", ".git", "node_modules"}
# [text](dest "title") and ![alt](dest); the destination ends at a space or ')'.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# [label]: dest
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HTML_LINK = re.compile(r"<(?:a|img)\s[^>]*(?:href|src)=\"([^\"]+)\"", re.IGNORECASE)
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def strip_code(lines, inline=True):
    """The lines with fenced blocks blanked and, if `inline`, inline code spans removed."""
    out, fence = [], None
    for line in lines:
        marker = re.match(r"^\s{0,3}(`{3,}|~{3,})", line)
        if fence:
            if marker and marker.group(1)[0] == fence[0] and len(marker.group(1)) >= len(fence):
                fence = None
            out.append("")
            continue
        if marker:
            fence = marker.group(1)
            out.append("")
            continue
        out.append(re.sub(r"(`+)(?:(?!\1).)+?\1", "", line) if inline else line)
    return out


def slug(text):
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading keeps its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path, cache={}):
    if path not in cache:
        seen, found = {}, set()
        for line in strip_code(path.read_text(encoding="utf-8").splitlines(), inline=False):
            m = HEADING.match(line)
            if not m:
                continue
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
        for m in re.finditer(r"<a\s+(?:name|id)=\"([^\"]+)\"", path.read_text(encoding="utf-8")):
            found.add(m.group(1))
        cache[path] = found
    return cache[path]


def check_file(root, path):
    problems = []
    lines = strip_code(path.read_text(encoding="utf-8").splitlines())
    for number, line in enumerate(lines, 1):
        dests = [m.group(1) for m in INLINE_LINK.finditer(line)]
        dests += [m.group(1) for m in HTML_LINK.finditer(line)]
        m = REFERENCE_DEF.match(line)
        if m:
            dests.append(m.group(1))
        for dest in dests:
            where = f"{path.relative_to(root)}:{number}: {dest}"
            if SCHEME.match(dest) or dest.startswith("//"):
                problems.append(f"{where}: links outside the repository")
                continue
            target, _, anchor = dest.partition("#")
            resolved = (path.parent / target).resolve() if target else path
            try:
                resolved.relative_to(root)
            except ValueError:
                problems.append(f"{where}: leads outside the repository")
                continue
            if not resolved.exists():
                problems.append(f"{where}: no such file")
                continue
            if anchor:
                if resolved.suffix.lower() != ".md" or resolved.is_dir():
                    problems.append(f"{where}: an anchor into a file that is not Markdown")
                elif anchor not in anchors(resolved):
                    problems.append(f"{where}: no heading makes the anchor #{anchor}")
    return problems


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    files = sorted(
        p for p in root.rglob("*.md")
        if not any(part in SKIP_DIRS for part in p.relative_to(root).parts)
    )
    problems = [p for f in files for p in check_file(root, f)]
    for problem in problems:
        print(problem)
    print(f"links: {len(files)} Markdown files checked, {len(problems)} broken", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
