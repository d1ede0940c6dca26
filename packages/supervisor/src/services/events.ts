/** containerd.services.events.v1.Events: publish, forward, subscribe (streamed, filtered). */
import { invalid } from '@berth/base';
import { EventPlugin, GRPCPlugin } from '../plugin.js';
import type { PluginRecord } from '../plugin.js';
import type { GrpcService } from '../grpc.js';
import type { Envelope } from '../events/exchange.js';
import { anyMessage, record, str, strList, timestamp } from '../wire.js';
import type { Wire } from '../wire.js';

export function envelopeToWire(env: Envelope): object {
  return { timestamp: env.timestamp, namespace: env.namespace, topic: env.topic, event: env.event ?? null };
}

export function envelopeFromWire(v: unknown): Envelope {
  const o = record(v, 'envelope');
  return {
    timestamp: timestamp(o['timestamp'], 'envelope.timestamp') ?? { seconds: 0, nanos: 0 },
    namespace: str(o, 'namespace', 'envelope'),
    topic: str(o, 'topic', 'envelope'),
    event: anyMessage(o['event'], 'envelope.event'),
  };
}

export const eventsService: PluginRecord<GrpcService> = {
  type: GRPCPlugin,
  id: 'events',
  requires: [EventPlugin],
  init: (ic) => {
    const exchange = ic.get(EventPlugin);
    return {
      service: 'containerd.services.events.v1.Events',
      unary: {
        Publish: (req: Wire, ctx) => {
          const ns = ctx.namespace();
          const event = anyMessage(req['event'], 'event');
          if (event === undefined) throw invalid('event must be set');
          exchange.publishAny(ns, str(req, 'topic', 'request'), event);
          return {};
        },
        Forward: (req: Wire) => {
          exchange.forward(envelopeFromWire(req['envelope']));
          return {};
        },
      },
      serverStream: {
        Subscribe: async (req: Wire, ctx, out) => {
          const sub = exchange.subscribe(strList(req, 'filters', 'request'));
          const onAbort = (): void => sub.close();
          ctx.signal.addEventListener('abort', onAbort, { once: true });
          try {
            for await (const env of sub) await out.write(envelopeToWire(env));
          } finally {
            ctx.signal.removeEventListener('abort', onAbort);
            sub.close();
          }
        },
      },
    };
  },
};
