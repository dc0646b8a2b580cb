// Where the running agent writes its status file, and the line in it that marks the active role:
// shared by the agent (which writes it) and the host scripts the components render (which read it).

export const DEFAULT_STATUS_PATH = "/run/sitelink/status.json";

/**
 * A line of the status file exactly when the agent holds the active role: what a shell script
 * (the cloud hosts' refresh) greps for, without a JSON parser.
 */
export const ACTIVE_STATUS_LINE = '"role": "active"';
