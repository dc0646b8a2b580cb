// Tunnel state per peer location, kept from charon's own listing (list-sas, on start and after the
// event connection reconnects) and its events (ike-updown, child-updown, ike-rekey, child-rekey).
// Pure bookkeeping: no I/O, a clock passed in.
import type { TunnelReport, TunnelState } from "../../contract/protocol";
import type { ViciSection, ViciValue } from "../vici/message";
import { NAME_PREFIX } from "./render";

interface IkeSa {
  remoteHost?: string;
  remoteId?: string;
  established: boolean;
  /** Unique ids of the CHILD_SAs installed under this IKE_SA. */
  children: Set<string>;
}

interface Watched {
  location: string;
  /** Peer host ids by address / IKE identity. */
  hostsByAddress: Map<string, string>;
  last: { state: TunnelState; peerHost?: string; peerAddress?: string; since: number };
}

const isSection = (value: ViciValue | undefined): value is ViciSection =>
  typeof value === "object" && value !== null && !Array.isArray(value);

const text = (value: ViciValue | undefined): string | undefined => (typeof value === "string" ? value : undefined);

export class TunnelTracker {
  /** IKE_SAs by connection name, then by unique id. */
  private readonly sas = new Map<string, Map<string, IkeSa>>();
  private readonly watched = new Map<string, Watched>();

  constructor(private readonly now: () => number = Date.now) {}

  /** The connections to report on (one per peer location); the rest of charon's SAs are ignored. */
  watch(conns: { name: string; location: string; hostsByAddress: Map<string, string> }[]): boolean {
    const next = new Map<string, Watched>();
    for (const conn of conns) {
      const previous = this.watched.get(conn.name);
      next.set(conn.name, {
        location: conn.location,
        hostsByAddress: conn.hostsByAddress,
        last: previous?.last ?? { state: "down", since: this.now() },
      });
    }
    this.watched.clear();
    for (const [name, w] of next) this.watched.set(name, w);
    return this.refresh();
  }

  /** Replaces everything known with a list-sas result (one `{ name: ike }` section per IKE_SA). */
  resync(listing: ViciSection[]): boolean {
    this.sas.clear();
    for (const entry of listing) {
      for (const [name, ike] of Object.entries(entry)) {
        if (!name.startsWith(NAME_PREFIX) || !isSection(ike)) continue;
        const sa = this.ikeFrom(ike);
        const children = isSection(ike["child-sas"]) ? ike["child-sas"] : {};
        for (const child of Object.values(children)) {
          if (isSection(child) && text(child.state) === "INSTALLED" && text(child.uniqueid)) sa.children.add(text(child.uniqueid)!);
        }
        const id = text(ike.uniqueid);
        if (id) this.sasOf(name).set(id, sa);
      }
    }
    return this.refresh();
  }

  /** Applies one event; returns true when a watched tunnel changed state. */
  event(event: string, message: ViciSection): boolean {
    const up = text(message.up) === "yes";
    for (const [name, body] of Object.entries(message)) {
      if (!name.startsWith(NAME_PREFIX) || !isSection(body)) continue;
      const sas = this.sasOf(name);
      switch (event) {
        case "ike-updown": {
          const id = text(body.uniqueid);
          if (!id) break;
          if (up) {
            const sa = sas.get(id) ?? this.ikeFrom(body);
            Object.assign(sa, { established: true, remoteHost: text(body["remote-host"]), remoteId: text(body["remote-id"]) });
            sas.set(id, sa);
          } else {
            sas.delete(id);
          }
          break;
        }
        case "child-updown": {
          const id = text(body.uniqueid);
          if (!id) break;
          // charon reports the children of a deleted IKE_SA down after the IKE_SA itself:
          // a down for an unknown IKE_SA must not bring it back.
          if (!up && !sas.has(id)) break;
          const sa = sas.get(id) ?? this.ikeFrom(body);
          sas.set(id, sa);
          const children = isSection(body["child-sas"]) ? body["child-sas"] : {};
          for (const child of Object.values(children)) {
            const childId = isSection(child) ? text(child.uniqueid) : undefined;
            if (!childId) continue;
            if (up) sa.children.add(childId);
            else sa.children.delete(childId);
          }
          break;
        }
        case "ike-rekey": {
          const oldId = isSection(body.old) ? text(body.old.uniqueid) : undefined;
          const fresh = isSection(body.new) ? body.new : undefined;
          const newId = fresh ? text(fresh.uniqueid) : undefined;
          if (!oldId || !newId || !fresh) break;
          const sa = this.ikeFrom(fresh);
          sa.established = true;
          // The CHILD_SAs move over to the new IKE_SA.
          for (const child of sas.get(oldId)?.children ?? []) sa.children.add(child);
          sas.delete(oldId);
          sas.set(newId, sa);
          break;
        }
        case "child-rekey": {
          const id = text(body.uniqueid);
          const sa = id ? sas.get(id) : undefined;
          const children = isSection(body["child-sas"]) ? body["child-sas"] : {};
          for (const child of Object.values(children)) {
            if (!sa || !isSection(child)) continue;
            const oldId = isSection(child.old) ? text(child.old.uniqueid) : undefined;
            const newId = isSection(child.new) ? text(child.new.uniqueid) : undefined;
            if (oldId) sa.children.delete(oldId);
            if (newId) sa.children.add(newId);
          }
          break;
        }
      }
    }
    return this.refresh();
  }

  /** IKE_SAs of a connection whose peer is not `address` (stale after the peer's failover). */
  staleIkeSas(name: string, address: string): string[] {
    return [...(this.sas.get(name) ?? new Map<string, IkeSa>())]
      .filter(([, sa]) => sa.remoteHost !== address && sa.remoteId !== address)
      .map(([id]) => id);
  }

  /** True when charon has no IKE_SA at all for the connection. */
  isDown(name: string): boolean {
    return (this.sas.get(name)?.size ?? 0) === 0;
  }

  reports(): TunnelReport[] {
    return [...this.watched.values()].map((w) => ({
      location: w.location,
      state: w.last.state,
      ...(w.last.peerHost ? { peerHost: w.last.peerHost } : {}),
      ...(w.last.peerAddress ? { peerAddress: w.last.peerAddress } : {}),
      since: w.last.since,
    }));
  }

  /** Recomputes every watched tunnel; true when any changed state or peer. */
  private refresh(): boolean {
    let changed = false;
    for (const [name, w] of this.watched) {
      const sas = [...(this.sas.get(name)?.values() ?? [])];
      const carrying = sas.find((sa) => sa.established && sa.children.size > 0);
      const state: TunnelState = carrying ? "up" : sas.length > 0 ? "connecting" : "down";
      const peerAddress = carrying?.remoteHost;
      const peerHost = carrying
        ? (w.hostsByAddress.get(carrying.remoteId ?? "") ?? w.hostsByAddress.get(carrying.remoteHost ?? ""))
        : undefined;
      if (state !== w.last.state || peerHost !== w.last.peerHost || peerAddress !== w.last.peerAddress) {
        w.last = { state, peerHost, peerAddress, since: this.now() };
        changed = true;
      }
    }
    return changed;
  }

  private sasOf(name: string): Map<string, IkeSa> {
    let sas = this.sas.get(name);
    if (!sas) this.sas.set(name, (sas = new Map()));
    return sas;
  }

  private ikeFrom(ike: ViciSection): IkeSa {
    return {
      remoteHost: text(ike["remote-host"]),
      remoteId: text(ike["remote-id"]),
      established: text(ike.state) === "ESTABLISHED",
      children: new Set(),
    };
  }
}
