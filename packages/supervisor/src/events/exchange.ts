/**
 * The in-process event bus. Services publish what happened (/containers/create,
 * /namespaces/delete, /tasks/exit...); the Events gRPC service streams the
 * envelopes to subscribers, each through its own bounded queue: a subscriber
 * that falls too far behind is cut off rather than letting memory grow.
 */
import { failedPrecondition, invalid, Logger, BerthError, ErrorKind } from '@berth/base';
import type { Adaptor, Filter } from '../filters.js';
import { parseFilters, present } from '../filters.js';
import type { Protos } from '../protos.js';
import { isRecord, now, validateIdentifier } from '../wire.js';
import type { AnyMessage, Timestamp } from '../wire.js';

/** containerd.types.Envelope */
export interface Envelope {
  timestamp: Timestamp;
  namespace: string;
  topic: string;
  event: AnyMessage | undefined;
}

/** How many envelopes may wait for one subscriber before it is cut off. */
export const SUBSCRIBER_QUEUE_LIMIT = 10_000;

/** containerd's topic rule: "/" then identifiers separated by "/". */
export function validateTopic(topic: string): void {
  const what = `envelope topic ${JSON.stringify(topic)}`;
  if (topic === '') throw invalid(`${what}: must not be empty`);
  if (!topic.startsWith('/')) throw invalid(`${what}: must start with '/'`);
  if (topic.length === 1) throw invalid(`${what}: must have at least one component`);
  for (const component of topic.slice(1).split('/')) {
    try {
      validateIdentifier(component);
    } catch (e) {
      throw invalid(`${what}: failed validation on component ${JSON.stringify(component)}: ${e instanceof Error ? e.message : String(e)}`, e);
    }
  }
}

export function validateEnvelope(env: Envelope): void {
  try {
    validateIdentifier(env.namespace);
  } catch (e) {
    throw invalid(`event envelope has invalid namespace: ${e instanceof Error ? e.message : String(e)}`, e);
  }
  validateTopic(env.topic);
  if (env.timestamp.seconds === 0 && env.timestamp.nanos === 0) throw invalid('timestamp must be set on forwarded event');
}

/** A field of a decoded event payload by proto field path (strings, numbers, booleans, maps, nested messages). */
function payloadField(value: unknown, path: readonly string[]): string | undefined {
  let cur: unknown = value;
  for (const key of path) {
    if (!isRecord(cur) || !Object.prototype.hasOwnProperty.call(cur, key)) return undefined;
    cur = cur[key];
  }
  if (typeof cur === 'string') return present(cur);
  if (typeof cur === 'number' || typeof cur === 'boolean') return String(cur);
  return undefined;
}

export class Subscription implements AsyncIterable<Envelope> {
  private readonly queue: Envelope[] = [];
  private waiter: (() => void) | undefined;
  private ended = false;
  private failure: Error | undefined;

  constructor(readonly filter: Filter, private readonly onClose: (s: Subscription) => void) {}

  /** Called by the exchange; false when the subscriber had to be cut off. */
  push(env: Envelope): boolean {
    if (this.ended) return true;
    if (this.queue.length >= SUBSCRIBER_QUEUE_LIMIT) {
      this.fail(new BerthError(ErrorKind.ResourceExhausted, `event subscriber fell more than ${SUBSCRIBER_QUEUE_LIMIT} events behind`));
      return false;
    }
    this.queue.push(env);
    this.wake();
    return true;
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  fail(err: Error): void {
    if (this.ended) return;
    this.failure = err;
    this.close();
  }

  /** End the stream: the iterator finishes after the queued envelopes (or throws the failure). */
  close(): void {
    if (this.ended) return;
    this.ended = true;
    this.onClose(this);
    this.wake();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Envelope> {
    try {
      for (;;) {
        if (this.failure !== undefined) throw this.failure;
        const next = this.queue.shift();
        if (next !== undefined) {
          yield next;
          continue;
        }
        if (this.ended) return;
        await new Promise<void>((resolve) => { this.waiter = resolve; });
      }
    } finally {
      this.close();
      this.queue.length = 0;
    }
  }
}

export class EventExchange {
  private readonly subscribers = new Set<Subscription>();
  private closed = false;

  constructor(private readonly protos: Protos, private readonly log: Logger = new Logger()) {}

  /** Publish an event whose payload is a message of the loaded protos (e.g. containerd.events.ContainerCreate). */
  publish(namespace: string, topic: string, typeName: string, payload: Readonly<Record<string, unknown>>): void {
    this.publishAny(namespace, topic, this.protos.pack(typeName, payload));
  }

  /** Publish an already encoded payload; the envelope gets the current time. */
  publishAny(namespace: string, topic: string, event: AnyMessage): void {
    try {
      validateIdentifier(namespace);
    } catch (e) {
      throw invalid(`envelope namespace: ${e instanceof Error ? e.message : String(e)}`, e);
    }
    validateTopic(topic);
    this.dispatch({ timestamp: now(), namespace, topic, event });
  }

  /** Re-publish an envelope from elsewhere (a shim), keeping its timestamp. */
  forward(env: Envelope): void {
    validateEnvelope(env);
    this.dispatch(env);
  }

  /** Subscribe with containerd filters (any may match; none = everything). */
  subscribe(filters: readonly string[]): Subscription {
    if (this.closed) throw failedPrecondition('event exchange is shut down');
    const filter = parseFilters(filters);
    const sub = new Subscription(filter, (s) => this.subscribers.delete(s));
    this.subscribers.add(sub);
    return sub;
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  /** The filter fields of an envelope: namespace, topic, and event.<payload field path>. */
  adaptor(env: Envelope): Adaptor {
    let decoded: Record<string, unknown> | null | undefined;
    return (fieldpath) => {
      switch (fieldpath[0]) {
        case 'namespace': return present(env.namespace);
        case 'topic': return present(env.topic);
        case 'event': {
          if (env.event === undefined || fieldpath.length < 2) return undefined;
          if (decoded === undefined) {
            try {
              decoded = this.protos.unpack(env.event)?.value ?? null;
            } catch {
              decoded = null;
            }
          }
          return decoded === null ? undefined : payloadField(decoded, fieldpath.slice(1));
        }
        default: return undefined;
      }
    };
  }

  private dispatch(env: Envelope): void {
    if (this.closed) return;
    this.log.debug('event', { namespace: env.namespace, topic: env.topic, type: env.event?.type_url ?? '' });
    if (this.subscribers.size === 0) return;
    const adaptor = this.adaptor(env);
    for (const sub of [...this.subscribers]) {
      if (!sub.filter.match(adaptor)) continue;
      if (!sub.push(env)) this.log.warn('event subscriber cut off: too slow', { limit: SUBSCRIBER_QUEUE_LIMIT });
    }
  }

  /** End every subscription; later publishes are dropped. */
  close(): void {
    this.closed = true;
    for (const sub of [...this.subscribers]) sub.close();
  }
}
