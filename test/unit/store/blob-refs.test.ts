/**
 * Which blobs a record refers to: only the `$blob` parts of its stored body, never upstream's JSON or a caller's that
 * the record embeds.
 */
import { describe, expect, it } from 'vitest';
import { blobRefs, indexedBlobRefs, newRecordBlobRefs } from '../../../src/store/blob-refs.js';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const DECOY = '1'.repeat(64);

/** A tool call whose input a caller chose: it looks like a blob reference. */
const toolUse = { type: 'tool_use', id: 'toolu_1', name: 'T', input: { $blob: DECOY } };

const request = {
  kind: 'exchange.request',
  data: {
    session: { id: 'ses_1', source: 'header' },
    request: {
      method: 'POST',
      headers: {},
      body: { size: 700, parts: ['{"system":', { $blob: A }, { $blob: B }, '}'] },
    },
  },
};
const response = {
  kind: 'exchange.response',
  data: {
    status: 200,
    body: { size: 300, parts: [{ $blob: B }] },
    message: { role: 'assistant', content: [toolUse] },
    error: null,
  },
};

describe('blob references', () => {
  it("are the $blob parts of a request's and a response's stored body", () => {
    expect(newRecordBlobRefs(request)).toEqual([A, B]);
    expect(newRecordBlobRefs(response)).toEqual([B]);
    expect(blobRefs({ kind: request.kind, data: JSON.stringify(request.data) })).toEqual([A, B]);
    expect(blobRefs({ kind: response.kind, data: JSON.stringify(response.data) })).toEqual([B]);
  });

  it('are each blob once', () => {
    const resent = { ...request, data: { request: { body: { size: 1, parts: [{ $blob: A }, ',', { $blob: A }] } } } };
    expect(newRecordBlobRefs(resent)).toEqual([A]);
  });

  it('are never what a payload holds, however it looks', () => {
    // Went wrong: a caller made the model call a tool with input {"$blob": "<hash>"}; the response record embeds the
    // assembled message, and the store refused it (and the records sharing its write) for a blob it does not hold.
    const streamed = { ...response, data: { ...response.data, body: null } };
    expect(newRecordBlobRefs(streamed)).toEqual([]);
    expect(blobRefs({ kind: streamed.kind, data: JSON.stringify(streamed.data) })).toEqual([]);
    // Stream events embed each event's JSON as received.
    const events = `{"events":[{"i":0,"type":"content_block_start","data":{"content_block":${JSON.stringify(toolUse)}}}]}`;
    expect(newRecordBlobRefs({ kind: 'exchange.events', data: null, json: events })).toEqual([]);
    expect(blobRefs({ kind: 'exchange.events', data: events })).toEqual([]);
    // A body-shaped value anywhere else, or in a record of any other kind.
    const elsewhere = {
      request: { body: null, headers: { x: { parts: [{ $blob: DECOY }] } } },
      body: { parts: [{ $blob: DECOY }] },
    };
    expect(newRecordBlobRefs({ kind: 'exchange.request', data: elsewhere })).toEqual([]);
    expect(newRecordBlobRefs({ kind: 'approval.held', data: { body: { parts: [{ $blob: DECOY }] } } })).toEqual([]);
    expect(newRecordBlobRefs({ kind: 'exchange.response', data: { body: { parts: { $blob: DECOY } } } })).toEqual([]);
    expect(newRecordBlobRefs({ kind: 'exchange.response', data: null })).toEqual([]);
  });

  it('as the store may have indexed them include any $blob at any depth (what earlier versions took for one)', () => {
    expect(indexedBlobRefs(JSON.stringify(response.data)).sort()).toEqual([DECOY, B].sort());
    expect(indexedBlobRefs(JSON.stringify(request.data))).toEqual([A, B]);
    expect(indexedBlobRefs('{"note":"no blobs"}')).toEqual([]);
  });
});
