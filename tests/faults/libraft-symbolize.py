"""Names the functions behind offsets into Debian's stripped libraft.so.2,
as a sanitizer prints them: `(/lib/x86_64-linux-gnu/libraft.so.2+0x92d7)`.

The shared library has no symbols for libraft's internal functions, but
the static libraft.a of the same package keeps them. The code is the same
build, so each object's functions are found in the shared library by
their instruction sequence (mnemonics only; addresses differ) and the
offset is named by the function that contains it.

Usage: python3 tests/faults/libraft-symbolize.py 0x92d7 0x93c5 ...
(docs/LIBRAFT.md, bug 8, shows its output.)"""
import glob
import os
import re
import subprocess
import sys
import tempfile

SO = "/usr/lib/x86_64-linux-gnu/libraft.so.2"
AR = "/usr/lib/x86_64-linux-gnu/libraft.a"
INSN = re.compile(r"^\s+([0-9a-f]+):\s+(\S+)")
FUNC = re.compile(r"^([0-9a-f]+) <(.+)>:$")


def disassemble(path):
    return subprocess.run(["objdump", "-d", "--no-show-raw-insn", path], check=True,
                          capture_output=True, text=True).stdout.splitlines()


def functions(path):
    """{(object, function): [mnemonic, ...]} of one object file."""
    out, cur = {}, None
    for line in disassemble(path):
        m = FUNC.match(line)
        if m:
            cur = (os.path.basename(path).split("-", 1)[-1], m.group(2))
            out[cur] = []
            continue
        m = INSN.match(line)
        if m and cur:
            out[cur].append(m.group(2))
    return {k: v for k, v in out.items() if len(v) >= 8}


def main():
    offsets = [int(x, 16) for x in sys.argv[1:]]
    if not offsets:
        sys.exit(__doc__)
    so = [(int(m.group(1), 16), m.group(2)) for m in map(INSN.match, disassemble(SO)) if m]
    mn = [x for _, x in so]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["ar", "x", AR], cwd=tmp, check=True)
        funcs = {}
        for obj in sorted(glob.glob(os.path.join(tmp, "*.o"))):
            funcs.update(functions(obj))
    for off in offsets:
        i = max(j for j, (a, _) in enumerate(so) if a <= off)
        found = None
        for (obj, name), seq in funcs.items():
            n = len(seq)
            for k in range(n):
                s = i - k
                if s >= 0 and s + n <= len(mn) and mn[s:s + n] == seq:
                    found = "%s in %s (+0x%x)" % (name, obj.replace(".o", ".c"), off - so[s][0])
                    break
            if found:
                break
        print("0x%x %s" % (off, found or "?"))


if __name__ == "__main__":
    main()
