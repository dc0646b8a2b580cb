// The topology file: loaded at start, reloaded on SIGHUP and when the file changes. A new
// document is validated first; an invalid one is refused and the old one keeps serving.
import { readFileSync, watch, type FSWatcher } from "node:fs";
import { basename, dirname } from "node:path";
import { checkTopology, type Topology, type TopologyIssue } from "../contract/topology";

export type LoadResult = { ok: true; topology: Topology } | { ok: false; issues: TopologyIssue[] };

/** Reads and validates the document; a missing file or bad JSON is an issue, not a throw. */
export function loadTopologyFile(file: string): LoadResult {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    return { ok: false, issues: [{ path: "", message: `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}` }] };
  }
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    return { ok: false, issues: [{ path: "", message: `${file} is not JSON: ${(error as Error).message}` }] };
  }
  return checkTopology(document);
}

/**
 * Calls `onChange` after the file changed (debounced: editors write in several steps) or on
 * SIGHUP. Watches the directory, so a file replaced by rename (the usual atomic write) is seen.
 */
export function watchTopologyFile(file: string, onChange: () => void, opts: { debounceMs?: number; signals?: boolean } = {}): () => void {
  const debounceMs = opts.debounceMs ?? 200;
  let timer: NodeJS.Timeout | undefined;
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(onChange, debounceMs);
  };
  const name = basename(file);
  const watcher: FSWatcher = watch(dirname(file), (_event, changed) => {
    if (changed === null || changed === name) schedule();
  });
  const onHup = () => onChange();
  if (opts.signals ?? true) process.on("SIGHUP", onHup);
  return () => {
    clearTimeout(timer);
    watcher.close();
    process.off("SIGHUP", onHup);
  };
}
