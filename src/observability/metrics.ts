/**
 * Prometheus metrics (`GET /metrics` on the admin listener): requests, latency and time to first byte, tokens,
 * refusals, recording failures, SIEM outbox lag and failures, and chains whose digests are overdue. Fed from the data
 * path's diagnostics channels, so the proxy knows nothing about them.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { otlpRejectedChannel } from '../export/otlp-sink.js';
import { isRefusal } from '../recorder/exchange-turn.js';
import type { LimitStatus } from '../policy/usage-limits.js';
import type { DigestWatchStatus } from '../store/digest-watch.js';
import {
  accessDeniedChannel,
  exchangeCompletedChannel,
  type AccessDenied,
  type ExchangeCompleted,
} from '../recorder/diagnostics.js';

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
/** Recording before forwarding takes about a millisecond; a store that is busy or failing, up to its 10 s busy wait. */
const RECORDING_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5, 10];

export interface MetricsSources {
  /** Recording failures since start. */
  recordingFailures(): number;
  /** Records waiting to be written. */
  recordingBacklog(): number;
  /** Whether the store refuses writes now (its last write failed as the store's own fault; see WriteQueue). */
  storeRefusingWrites(): boolean;
  /** Per SIEM sink. */
  sinks(): ReadonlyArray<{ sink: string; lag: number; failures: number; delivered: number; undeliverable: number }>;
  /** What the last check for overdue digests found (see DigestWatchStatus). */
  digests?(): DigestWatchStatus;
  /** The connections' usage limits and what is used of them now (see UsageLimits.status). */
  limits?(): readonly LimitStatus[];
  /** Whether the last config reload was applied (true before any), and when one last was (ms since the epoch). */
  configReload?(): { readonly successful: boolean; readonly lastSuccessAt: number; readonly sha256: string };
}

export class Metrics {
  readonly registry = new Registry();
  private readonly onExchange: (m: unknown) => void;
  private readonly onDenied: (m: unknown) => void;
  private readonly onRejected: (m: unknown) => void;
  /** The usage limits as the scrape in progress read them (see text()). */
  private limitsScraped: readonly LimitStatus[] | undefined;

  constructor(sources: MetricsSources) {
    const r = this.registry;
    collectDefaultMetrics({ register: r, prefix: 'vigil_process_' });
    const requests = new Counter({
      name: 'vigil_requests_total',
      help: "Exchanges completed, by connection, outcome and the status the client received (upstream's, or the gateway's own when it refused or failed the call; none when the client received none)",
      labelNames: ['connection', 'outcome', 'status'],
      registers: [r],
    });
    const duration = new Histogram({
      name: 'vigil_request_duration_seconds',
      help: 'Time from request to the end of the response',
      labelNames: ['connection'],
      buckets: LATENCY_BUCKETS,
      registers: [r],
    });
    const ttfb = new Histogram({
      name: 'vigil_time_to_first_byte_seconds',
      help: 'Time from request to upstream’s first response byte',
      labelNames: ['connection'],
      buckets: LATENCY_BUCKETS,
      registers: [r],
    });
    const recording = new Histogram({
      name: 'vigil_request_recording_seconds',
      help: 'Time the request was held to be recorded before it was forwarded: masking, splitting, hashing and the commit',
      labelNames: ['connection'],
      buckets: RECORDING_BUCKETS,
      registers: [r],
    });
    const tokens = new Counter({
      name: 'vigil_tokens_total',
      help: 'Tokens reported by upstream, by kind (input, output, cache_read, cache_creation)',
      labelNames: ['connection', 'model', 'kind'],
      registers: [r],
    });
    const refusals = new Counter({
      name: 'vigil_refusals_total',
      help: 'Answers a model declined (stop_reason refusal: its safety classifiers), by connection and model',
      labelNames: ['connection', 'model'],
      registers: [r],
    });
    const rejectedRecords = new Counter({
      name: 'vigil_sink_rejected_records_total',
      help: 'Audit events a SIEM accepted a batch of but rejected one by one (OTLP partial success), since start',
      labelNames: ['sink'],
      registers: [r],
    });
    this.onRejected = (m) => {
      const d = m as { sink: string; rejected: number };
      if (d.rejected > 0) rejectedRecords.inc({ sink: d.sink }, d.rejected);
    };
    const denied = new Counter({
      name: 'vigil_access_denied_total',
      help: 'Callers refused before forwarding (401, 403; 429 over a usage limit)',
      labelNames: ['connection', 'status'],
      registers: [r],
    });
    new Gauge({
      name: 'vigil_recording_failures_total',
      help: 'Failures to record since start: a write that failed, a request refused for it, an outage once',
      registers: [r],
      collect() {
        this.set(sources.recordingFailures());
      },
    });
    if (sources.configReload) {
      const reload = sources.configReload;
      // As Prometheus names its own: alert on `vigil_config_last_reload_successful == 0` (a policy pushed, not applied).
      new Gauge({
        name: 'vigil_config_last_reload_successful',
        help: 'Whether the last config reload (SIGHUP) was applied: 1, or 1 before any; 0 when it was refused',
        registers: [r],
        collect() {
          this.set(reload().successful ? 1 : 0);
        },
      });
      new Gauge({
        name: 'vigil_config_info',
        help: 'The config running now, by its SHA-256 as `vigil config check` prints it: always 1',
        labelNames: ['sha256'],
        registers: [r],
        collect() {
          this.reset();
          this.set({ sha256: reload().sha256 }, 1);
        },
      });
      new Gauge({
        name: 'vigil_config_last_reload_success_timestamp_seconds',
        help: 'When the config running now was applied: the last reload that succeeded, else start-up',
        registers: [r],
        collect() {
          this.set(reload().lastSuccessAt / 1000);
        },
      });
    }
    new Gauge({
      name: 'vigil_recording_backlog',
      help: 'Records waiting to be written to the store',
      registers: [r],
      collect() {
        this.set(sources.recordingBacklog());
      },
    });
    new Gauge({
      name: 'vigil_store_refusing_writes',
      help: '1 while the store refuses writes (calls that must be recorded are refused; records are held), else 0',
      registers: [r],
      collect() {
        this.set(sources.storeRefusingWrites() ? 1 : 0);
      },
    });
    // Usage limits, read when scraped: for a limit the connection shares, what is used of it (alert before it is
    // reached); for every limit, how many callers it refuses now. Per-caller usage is not a label (unbounded).
    if (sources.limits) {
      const read = sources.limits;
      // The limits' figures are worked out once per scrape (for every caller), whichever gauge asks first.
      const limits = (): readonly LimitStatus[] => (this.limitsScraped ??= read());
      /**
       * A gauge of a figure per limit, in the units the limit counts: tokens, calls, and cost (unit: the currency, as
       * `pricing.currency` names it).
       */
      const perUnit = (
        name: string,
        help: string,
        figure: (l: LimitStatus) => { tokens: number; calls: number; cost: number } | null,
      ) =>
        new Gauge({
          name,
          help,
          labelNames: ['connection', 'limit', 'unit'],
          registers: [r],
          collect() {
            this.reset();
            for (const l of limits()) {
              const f = figure(l);
              if (!f) continue;
              if (l.tokens !== null) this.set({ connection: l.connection, limit: l.name, unit: 'tokens' }, f.tokens);
              if (l.requests !== null) this.set({ connection: l.connection, limit: l.name, unit: 'calls' }, f.calls);
              if (l.cost !== null)
                this.set({ connection: l.connection, limit: l.name, unit: l.currency ?? 'cost' }, f.cost);
            }
          },
        });
      perUnit('vigil_usage_limit', 'A usage limit: the tokens, calls or cost it allows in its window', (l) => ({
        tokens: l.tokens ?? 0,
        calls: l.requests ?? 0,
        cost: l.cost ?? 0,
      }));
      perUnit(
        'vigil_usage_limit_used',
        'What the callers of a connection used of a limit they share, in its window now',
        (l) => {
          const used = l.per === 'connection' ? l.usage[0] : undefined;
          return used ? { tokens: used.tokens, calls: used.requests, cost: used.cost } : null;
        },
      );
      // Per group, for the groups a per-group limit names (its `for`): labels the config bounds, not callers' claims.
      new Gauge({
        name: 'vigil_usage_limit_group_used',
        help: 'What the members of a group used of a per-group limit that names the group, in its window now',
        labelNames: ['connection', 'limit', 'unit', 'group'],
        registers: [r],
        collect() {
          this.reset();
          for (const l of limits()) {
            if (l.per !== 'group') continue;
            const named = (l.for ?? []).flatMap((f) => ('group' in f && f.group !== undefined ? [f.group] : []));
            for (const group of named) {
              const used = l.usage.find((u) => u.group === group);
              const labels = { connection: l.connection, limit: l.name, group };
              if (l.tokens !== null) this.set({ ...labels, unit: 'tokens' }, used?.tokens ?? 0);
              if (l.requests !== null) this.set({ ...labels, unit: 'calls' }, used?.requests ?? 0);
              if (l.cost !== null) this.set({ ...labels, unit: l.currency ?? 'cost' }, used?.cost ?? 0);
            }
          }
        },
      });
      new Gauge({
        name: 'vigil_usage_limit_refusing',
        help: 'Callers a usage limit refuses now (for a limit the connection shares: 1 while it refuses everyone)',
        labelNames: ['connection', 'limit'],
        registers: [r],
        collect() {
          this.reset();
          for (const l of limits()) {
            const refusing = l.usage.filter((u) => u.refusedUntil !== null).length;
            this.set({ connection: l.connection, limit: l.name }, refusing);
          }
        },
      });
    }
    // One gauge per figure of the SIEM outbox, each labelled by sink, read when scraped.
    const sinkGauge = (name: string, help: string, figure: 'lag' | 'failures' | 'delivered' | 'undeliverable') =>
      new Gauge({
        name,
        help,
        labelNames: ['sink'],
        registers: [r],
        collect() {
          for (const s of sources.sinks()) this.set({ sink: s.sink }, s[figure]);
        },
      });
    sinkGauge('vigil_outbox_lag_events', 'Audit records not yet delivered to a SIEM sink', 'lag');
    sinkGauge('vigil_sink_failures_total', 'Failed deliveries to a SIEM sink since start', 'failures');
    sinkGauge('vigil_sink_delivered_total', 'Audit events delivered to a SIEM sink since start', 'delivered');
    sinkGauge(
      'vigil_sink_undeliverable_total',
      'Audit events a SIEM sink kept refusing, set aside as siem.undeliverable records, since start',
      'undeliverable',
    );

    const digests = sources.digests?.bind(sources);
    if (digests) {
      new Gauge({
        name: 'vigil_ledger_digests_overdue',
        help: 'Chains whose records went without a digest of their chain for longer than signing.overdue_after',
        registers: [r],
        collect() {
          this.set(digests().overdue.length);
        },
      });
      new Gauge({
        name: 'vigil_ledger_chains_stopped_undigested',
        help:
          'Chains whose writer is gone, and whose last records went without a digest of their chain for longer than ' +
          'signing.overdue_after: each alerted once (ledger.digest_overdue), then counted here and no longer as overdue',
        registers: [r],
        collect() {
          this.set(digests().stopped.length);
        },
      });
      new Gauge({
        name: 'vigil_ledger_undigested_seconds',
        help:
          'Per chain with records no digest of its own covers yet (whose writer runs, or which is overdue): ' +
          'how long the oldest of them has waited, as of the last check',
        labelNames: ['chain'],
        registers: [r],
        collect() {
          // Only the chains the last check found: one that was signed since is gone, not left at its last value.
          this.reset();
          for (const u of digests().undigested) this.set({ chain: u.chain }, u.ms / 1000);
        },
      });
    }

    this.onExchange = (m) => {
      const e = m as ExchangeCompleted;
      requests.inc({ connection: e.connection, outcome: e.outcome, status: String(e.status ?? 'none') });
      duration.observe({ connection: e.connection }, e.durationMs / 1000);
      if (e.firstByteMs !== null) ttfb.observe({ connection: e.connection }, e.firstByteMs / 1000);
      if (e.recordedMs !== null) recording.observe({ connection: e.connection }, e.recordedMs / 1000);
      const model = e.model ?? 'unknown';
      if (e.inputTokens) tokens.inc({ connection: e.connection, model, kind: 'input' }, e.inputTokens);
      if (e.outputTokens) tokens.inc({ connection: e.connection, model, kind: 'output' }, e.outputTokens);
      if (e.cacheReadTokens) tokens.inc({ connection: e.connection, model, kind: 'cache_read' }, e.cacheReadTokens);
      if (e.cacheCreationTokens)
        tokens.inc({ connection: e.connection, model, kind: 'cache_creation' }, e.cacheCreationTokens);
      if (isRefusal(e.stopReason)) refusals.inc({ connection: e.connection, model });
    };
    this.onDenied = (m) => {
      const d = m as AccessDenied;
      denied.inc({ connection: d.connection, status: String(d.status) });
    };
    exchangeCompletedChannel.subscribe(this.onExchange);
    accessDeniedChannel.subscribe(this.onDenied);
    otlpRejectedChannel.subscribe(this.onRejected);
  }

  async text(): Promise<string> {
    this.limitsScraped = undefined;
    try {
      return await this.registry.metrics();
    } finally {
      this.limitsScraped = undefined;
    }
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  close(): void {
    exchangeCompletedChannel.unsubscribe(this.onExchange);
    accessDeniedChannel.unsubscribe(this.onDenied);
    otlpRejectedChannel.unsubscribe(this.onRejected);
  }
}
