/**
 * The engine's event stream (`GET /events`, `docker events`): Docker's event
 * messages, kept in a bounded ring for `since` and fanned out to followers.
 */
export type EventType = 'container' | 'image' | 'network' | 'volume' | 'daemon' | 'plugin' | 'node' | 'service' | 'secret' | 'config' | 'builder';

export interface EngineEvent {
  Type: EventType;
  Action: string;
  Actor: { ID: string; Attributes: Record<string, string> };
  scope: 'local';
  time: number;
  timeNano: number;
  /** Old fields still sent for container and image events. */
  status?: string;
  id?: string;
  from?: string;
}

const RING = 1000;

export class EventBus {
  private readonly ring: EngineEvent[] = [];
  private readonly followers = new Set<(e: EngineEvent) => void>();
  private lastNano = 0;

  emit(type: EventType, action: string, id: string, attributes: Record<string, string> = {}): EngineEvent {
    let nano = Date.now() * 1_000_000 + Math.floor((performance.now() % 1) * 1_000_000);
    if (nano <= this.lastNano) nano = this.lastNano + 1;
    this.lastNano = nano;
    const ev: EngineEvent = {
      Type: type, Action: action, Actor: { ID: id, Attributes: attributes }, scope: 'local',
      time: Math.floor(nano / 1e9), timeNano: nano,
    };
    if (type === 'container' || type === 'image') {
      ev.status = action;
      ev.id = id;
      if (type === 'container' && attributes['image'] !== undefined) ev.from = attributes['image'];
    }
    this.ring.push(ev);
    if (this.ring.length > RING) this.ring.shift();
    for (const f of this.followers) f(ev);
    return ev;
  }

  /** Events kept since a time (ns), oldest first. */
  since(nano: number): EngineEvent[] {
    return this.ring.filter((e) => e.timeNano >= nano);
  }

  follow(fn: (e: EngineEvent) => void): () => void {
    this.followers.add(fn);
    return () => this.followers.delete(fn);
  }
}
