// Shell primitives of every script the components render: the script frame (strict mode, $root,
// retry), sections, atomic file writes and quoting. Every path is under $SITELINK_ROOT (empty on a
// real host) so a test can run a script in a temporary root with stubbed system commands.

export function script(title: string, sections: string[]): string {
  return [
    "#!/bin/bash",
    `# ${title}`,
    "# Rendered by the sitelink Pulumi components.",
    "set -euo pipefail",
    `root="${"$"}{SITELINK_ROOT:-}"`,
    "export DEBIAN_FRONTEND=noninteractive",
    "# Network steps are retried: cloud-init runs this once, early in boot.",
    "retry() {",
    "  local attempt",
    "  for attempt in 1 2 3 4 5 6 7 8 9 10; do",
    '    if "$@"; then return 0; fi',
    `    echo "sitelink: attempt $attempt of '$*' failed" >&2`,
    "    sleep 6",
    "  done",
    "  return 1",
    "}",
    "",
    sections.join("\n\n"),
    "",
  ].join("\n");
}

export function section(comment: string, lines: string[]): string {
  return [`# ${comment}`, ...lines].join("\n");
}

export function installPackages(packages: readonly string[]): string {
  return section("Packages.", ["retry apt-get update -q", `retry apt-get install -y -q ${packages.join(" ")}`]);
}

/**
 * Writes `content` to `path` (under $root) with `mode`, atomically; the content is never expanded by
 * the shell. A file that already holds `content` is left as it is (only its mode set): its time
 * then says when it last changed, which is what decides whether a daemon reading it restarts.
 */
export function writeFile(path: string, mode: string, content: string): string {
  const delimiter = "SITELINK_EOF";
  if (content.split("\n").includes(delimiter)) throw new Error(`content of ${path} contains the heredoc delimiter`);
  return [
    `(umask 077 && cat > "$root${path}.tmp" <<'${delimiter}'`,
    content,
    delimiter,
    ")",
    `chmod ${mode} "$root${path}.tmp"`,
    `if cmp -s "$root${path}.tmp" "$root${path}"; then chmod ${mode} "$root${path}"; rm -f "$root${path}.tmp"; else mv -f "$root${path}.tmp" "$root${path}"; fi`,
  ].join("\n");
}

/** Single-quotes a value for bash. */
export function quote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}
