// Types for widget.js, the embeddable API.

/** An entity; offsets are UTF-16 code units (`text.slice(start, end) === entity.text`). */
export interface Entity {
  label: string;
  start: number;
  end: number;
  text: string;
  /** Mean probability of the entity's tokens (model) or the validator's confidence (pattern). */
  score: number;
  source: 'model' | 'pattern';
}

export interface EntityType {
  label: string;
  description?: string;
  examples?: string[];
  counter_examples?: string[];
  recognizer?: 'email' | 'phone' | 'credit_card' | 'iban' | 'ip_address' | 'url' | 'us_ssn' | 'date' | 'money' | 'quantity' | 'honorific';
}

export interface Schema {
  description?: string;
  span_rules?: string;
  labels: EntityType[];
}

export interface LoadInfo {
  backend: 'cpu' | 'webgpu';
  /** The GPU adapter's name, or why the CPU runs the model. */
  device: string;
  /** Threads that share the CPU's work, and why that many (threads need a cross-origin
   *  isolated page: COOP `same-origin` and COEP `require-corp`). */
  threads: { count: number; why: string };
  model: string;
  /** sha256 of the fine-tuning adapter in use, or null. */
  adapter: string | null;
  loadMs: number;
  fromCache: boolean;
  bytes: number;
}

export interface Progress {
  /** Loading, in this order: the model's download, its weights read and prepared, the adapter's download. */
  phase: 'download' | 'load' | 'adapter';
  loaded: number;
  total: number;
}

/** The redacted text and where each replacement went (UTF-16 offsets into the original and
 *  the redacted text); never an original value. */
export interface Redaction {
  text: string;
  replacements: {
    label: string;
    start: number;
    end: number;
    redacted_start: number;
    redacted_end: number;
    operator: 'replace' | 'mask' | 'hash' | 'pseudonym';
    replacement: string;
  }[];
}

/** `replace`, `mask`, `mask:C:N`, `hash` or `pseudonym`, per label; `*` for the rest.
 *  `hash` and `pseudonym` need a key (HMAC-SHA256): equal values get equal replacements
 *  wherever the same key is used. `mask` keeps at most half of a value's characters. */
export type Operators = Record<string, string>;

/** Errors carry a stable `code` (e.g. `invalid_schema`, `not_gguf`, `cancelled`). */
export interface AnoteError extends Error {
  code: string;
}

/** `models/gemma-3-270m-q4_k_m.gguf` beside the page (the site hosts the model). */
export declare const DEFAULT_MODEL: string;

export declare class Anote extends EventTarget {
  /** `threads`: Web Workers that share the CPU's work where the page is cross-origin
   *  isolated (default: all cores but one, both of two, at most 8). */
  constructor(options?: { threads?: number });
  /** `backend`: 'auto' (default: a hardware WebGPU adapter, else the CPU), 'webgpu' (any adapter) or 'cpu'. */
  load(model?: string | Blob | ArrayBuffer, options?: { adapter?: boolean; backend?: 'auto' | 'webgpu' | 'cpu' }): Promise<LoadInfo>;
  /** Checks `schema` and reads its prompt into the engine's cache, so that the next
   *  `extract` with it starts at the text (call it while the user writes); resolves to the
   *  prompt's length in tokens, and `stored: true` where the cache was read from the
   *  browser's file store (kept there from an earlier visit) instead of the model. */
  prepare(schema: Schema | string): Promise<{ tokens: number; stored: boolean }>;
  extract(text: string, schema: Schema | string): Promise<{ entities: Entity[]; windows: [number, number][]; decoded_tokens: number }>;
  redact(text: string, entities: Entity[], operators?: Operators, options?: { key?: string }): Promise<Redaction>;
  /** The built-in recognizers a schema type may name; needs no model. */
  recognizers(): Promise<{ name: NonNullable<EntityType['recognizer']>; description: string }[]>;
  cancel(): void;
  addEventListener(type: 'progress', listener: (e: CustomEvent<Progress>) => void): void;
  addEventListener(type: 'ready', listener: (e: CustomEvent<LoadInfo>) => void): void;
  addEventListener(type: 'entity', listener: (e: CustomEvent<Entity>) => void): void;
}

/** `<anote-extractor model="…" schema="URL or inline JSON" mode="highlight|redact">`; fires `entities`. */
export declare class AnoteExtractor extends HTMLElement {
  readonly ready: Promise<void>;
}
