/**
 * What tokens cost (`pricing:` in the config), and the cost of a usage report's rows from it.
 *
 * Anthropic bills four kinds of input apart — uncached input, cache writes of five minutes and of an hour, cache
 * reads — and output. An agent's calls are mostly cache reads (Claude Code resends its whole conversation, cached,
 * every turn), billed at a tenth of input or less: counting every input token at one rate overstates such a bill
 * several times. So the exchange index keeps cache reads and writes apart (`exchange_results.cache_*_tokens`), and a
 * report prices each exchange by the model that answered, in SQL both stores accept, before adding them up.
 *
 * No prices are built in: they change with every model, differ per model in their cache ratios, and a company's own
 * may be negotiated. The README shows how to write them from Anthropic's pricing page.
 */
import { z } from 'zod';

/** Model ids as Anthropic, Bedrock and Vertex AI write them (`claude-opus-4-5@20251101`), or a prefix with `*`. */
const MODEL_PATTERN = /^[A-Za-z0-9._:@/-]+\*?$/;

/** A rate in currency units per million tokens. */
const rate = z.number().finite().nonnegative();

const modelPriceSchema = z
  .object({
    /** A model id (`claude-opus-4-5-20251101`), or a prefix ending in `*` (`claude-opus-4-5*`): the first match wins. */
    model: z
      .string()
      .regex(
        MODEL_PATTERN,
        'must be a model id, or a prefix of one ending in * (a * only at the end), e.g. claude-opus-4-5*: letters, ' +
          'digits and . _ - : @ /',
      ),
    /** Uncached input tokens. */
    input: rate,
    output: rate,
    /** Cache writes of the default five minutes; absent: 1.25 × input. */
    cache_write: rate.optional(),
    /** Cache writes of an hour (`cache_control.ttl: 1h`); absent: 2 × input. */
    cache_write_1h: rate.optional(),
    /** Cache reads (hits and refreshes); absent: 0.1 × input. */
    cache_read: rate.optional(),
  })
  .strict();

export const pricingSchema = z
  .object({
    /** What the rates are in, as reports name it (`USD`, `EUR`): a label, never converted. */
    currency: z
      .string()
      .regex(/^[A-Z]{3}$/, 'must be a three-letter currency code such as USD or EUR')
      .default('USD'),
    models: z.array(modelPriceSchema).min(1, 'must price at least one model (or leave pricing out)'),
  })
  .strict()
  .superRefine((p, ctx) => {
    const seen = new Map<string, number>();
    p.models.forEach((m, i) => {
      const first = seen.get(m.model);
      if (first !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['models', i, 'model'],
          message: `"${m.model}" is priced already at pricing.models[${first}]; the first match wins, so this one never would`,
        });
      else seen.set(m.model, i);
    });
  });
export type PricingConfig = z.output<typeof pricingSchema>;

/** One model's rates with the cache rates filled in: what a report prices by. */
export interface ModelPrice {
  readonly model: string;
  readonly input: number;
  readonly output: number;
  readonly cacheWrite: number;
  readonly cacheWrite1h: number;
  readonly cacheRead: number;
}

export interface Pricing {
  readonly currency: string;
  readonly models: readonly ModelPrice[];
}

/** A derived rate without float noise (3 × 0.1 is 0.30000000000000004): to the twelfth decimal, as SQL gets it. */
function times(rate: number, factor: number): number {
  return Number((rate * factor).toFixed(12));
}

/** The config's pricing as reports use it (the cache rates Anthropic's list prices derive from input by default). */
export function pricingFrom(config: PricingConfig | undefined): Pricing | undefined {
  if (config === undefined) return undefined;
  return {
    currency: config.currency,
    models: config.models.map((m) => ({
      model: m.model,
      input: m.input,
      output: m.output,
      cacheWrite: m.cache_write ?? times(m.input, 1.25),
      cacheWrite1h: m.cache_write_1h ?? times(m.input, 2),
      cacheRead: m.cache_read ?? times(m.input, 0.1),
    })),
  };
}

/** The price of `model` (the first entry that matches, as in SQL), else undefined. */
export function priceOf(pricing: Pricing, model: string | null): ModelPrice | undefined {
  if (model === null || model === '') return undefined;
  return pricing.models.find((p) =>
    p.model.endsWith('*') ? model.startsWith(p.model.slice(0, -1)) : model === p.model,
  );
}

/** One exchange's tokens as upstream's `usage` gives them: `input` is the uncached part. */
export interface ExchangeTokens {
  readonly input: number;
  readonly output: number;
  readonly cacheRead: number;
  /** Cache writes of either lifetime, and of those the ones kept an hour. */
  readonly cacheWrite: number;
  readonly cacheWrite1h: number;
}

/** What one exchange's tokens cost at `price`, in currency units: the same sum the reports' SQL makes. */
export function costOf(price: ModelPrice, t: ExchangeTokens): number {
  const write1h = Math.min(t.cacheWrite1h, t.cacheWrite);
  return (
    (t.input * price.input +
      (t.cacheWrite - write1h) * price.cacheWrite +
      write1h * price.cacheWrite1h +
      t.cacheRead * price.cacheRead +
      t.output * price.output) /
    1_000_000
  );
}

/** A number as an SQL literal both stores read as that number (validated finite and non-negative). */
function literal(n: number): string {
  // Never in exponent form, which `String` gives below 1e-6: `0.0000005`.
  return n.toFixed(12).replace(/\.?0+$/, '') || '0';
}

/** A model id as an SQL string literal (the schema allows no quote in it; doubled all the same). */
function text(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

/**
 * SQL for the cost of each exchange of `exchanges e LEFT JOIN exchange_results r` (times a million: the rates are
 * per million tokens), NULL for an exchange of a model with no price. Model ids and rates are literals the schema
 * checked, not bound parameters: the expression appears twice in a statement, and SQLite binds by position.
 */
function costSql(pricing: Pricing, model: string): string {
  const read = 'coalesce(r.cache_read_tokens, 0)';
  const write = 'coalesce(r.cache_write_tokens, 0)';
  const write1h = 'coalesce(r.cache_write_1h_tokens, 0)';
  const uncached = `(coalesce(r.input_tokens, 0) - ${read} - ${write})`;
  const whens = pricing.models.map((p) => {
    const match = p.model.endsWith('*')
      ? `substr(${model}, 1, ${p.model.length - 1}) = ${text(p.model.slice(0, -1))}`
      : `${model} = ${text(p.model)}`;
    return (
      `WHEN ${match} THEN ${uncached} * ${literal(p.input)} + (${write} - ${write1h}) * ${literal(p.cacheWrite)} + ` +
      `${write1h} * ${literal(p.cacheWrite1h)} + ${read} * ${literal(p.cacheRead)} + ` +
      `coalesce(r.output_tokens, 0) * ${literal(p.output)}`
    );
  });
  return `CASE ${whens.join(' ')} END`;
}

/** The columns {@link costColumns} selects, as a store hands them out (PostgreSQL's sums of bigints as strings). */
export interface CostSqlColumns {
  cache_read_tokens: number | string;
  cache_write_tokens: number | string;
  /** The cost times a million (rates are per million tokens); null without pricing, or nothing priced. */
  cost: number | string | null;
  unpriced: number | string | null;
}

/**
 * Aggregates over `exchanges e LEFT JOIN exchange_results r` (a usage report's group, a session): cache reads and
 * writes, and with `pricing` what the exchanges cost — each priced by `model`, the model it is listed with — and how
 * many with tokens had no price (counted, not guessed). `int`: the dialect's cast of a sum to an integer.
 */
export function costColumns(pricing: Pricing | undefined, model: string, int: string): string {
  const cache = `coalesce(sum(r.cache_read_tokens), 0)${int} AS cache_read_tokens,
            coalesce(sum(r.cache_write_tokens), 0)${int} AS cache_write_tokens`;
  if (!pricing) return `${cache}, NULL AS cost, NULL AS unpriced`;
  // No price matched: the CASE has no ELSE, so its cost is NULL (every priced branch adds coalesced counts).
  const cost = costSql(pricing, model);
  return `${cache}, sum(${cost}) AS cost,
            sum(CASE WHEN (${cost}) IS NULL AND coalesce(r.input_tokens, 0) + coalesce(r.output_tokens, 0) > 0
              THEN 1 ELSE 0 END)${int} AS unpriced`;
}

/** The figures of {@link costColumns}' columns. */
export function costOfRow(
  r: CostSqlColumns,
  pricing: Pricing | undefined,
): { cacheReadTokens: number; cacheWriteTokens: number; cost: number | null; unpriced: number | null } {
  return {
    cacheReadTokens: Number(r.cache_read_tokens),
    cacheWriteTokens: Number(r.cache_write_tokens),
    // Rounded to a millionth of the currency: below that is float noise, which would tell the two stores apart.
    cost: pricing ? Math.round(Number(r.cost ?? 0)) / 1e6 : null,
    unpriced: pricing ? Number(r.unpriced ?? 0) : null,
  };
}
