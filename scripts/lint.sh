#!/usr/bin/env bash
# Check the tree against .clang-format and .clang-tidy.
#   scripts/lint.sh format        clang-format, no changes, fails on a difference
#   scripts/lint.sh tidy BUILDDIR clang-tidy with BUILDDIR's compile_commands.json
#   scripts/lint.sh fix           rewrite files with clang-format
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.c' '*.h' 2>/dev/null || find lib state raft net master cli bench tests fuzz -name '*.[ch]')
case "${1:-format}" in
format)
	clang-format --dry-run --Werror "${files[@]}"
	echo "clang-format: ${#files[@]} files clean"
	;;
fix)
	clang-format -i "${files[@]}"
	;;
tidy)
	build=${2:-build}
	mapfile -t srcs < <(printf '%s\n' "${files[@]}" | grep '\.c$' | grep -v '^tests/')
	out=$(clang-tidy -p "$build" --quiet "${srcs[@]}" 2>/dev/null || true)
	if grep -q 'warning:\|error:' <<<"$out"; then
		echo "$out" | grep -A3 'warning:\|error:'
		exit 1
	fi
	echo "clang-tidy: ${#srcs[@]} files clean"
	;;
*)
	echo "usage: scripts/lint.sh format|tidy [BUILDDIR]|fix" >&2
	exit 2
	;;
esac
