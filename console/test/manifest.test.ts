import { readFileSync } from "node:fs";

import { describe, expect, it } from "vitest";

import { ManifestError, parseManifest, totals } from "../src/manifest";

interface Case {
  name: string;
  manifest: string;
  expect: { ok?: { cpu_millis: number; memory_mib: number; storage_gib: number }; field?: string; syntax?: boolean };
}

// The same file berth-protocol's parser is tested against (protocol/src/manifest/tests.rs).
const vectors: { cases: Case[] } = JSON.parse(
  readFileSync(new URL("../../protocol/vectors/manifests.json", import.meta.url), "utf8"),
);

describe("the shared manifest vectors", () => {
  it("are many", () => expect(vectors.cases.length).toBeGreaterThanOrEqual(50));

  for (const c of vectors.cases) {
    it(c.name, () => {
      if (c.expect.ok) {
        const t = totals(parseManifest(c.manifest));
        expect([t.cpuMillis, t.memoryMiB, t.storageGiB]).toEqual([
          c.expect.ok.cpu_millis, c.expect.ok.memory_mib, c.expect.ok.storage_gib,
        ]);
        return;
      }
      let error: unknown;
      try {
        parseManifest(c.manifest);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ManifestError);
      const e = error as ManifestError;
      if (c.expect.field !== undefined) {
        expect(e.kind, e.message).toBe("field");
        expect(e.field).toBe(c.expect.field);
        expect(e.message).toContain(c.expect.field);
      } else {
        expect(e.kind, e.message).toBe("syntax");
      }
    });
  }
});

describe("what only the page refuses", () => {
  it("a sealed secrets section points to the CLI", () => {
    const text = `version: 1\nsecrets: {key_version: 1, names: [a], sealed: x}\nservices:\n  web:\n    image: i\n    resources: {cpu: 1, memory: 1Mi}\n`;
    expect(() => parseManifest(text)).toThrow(/berth deploy --secret/);
  });

  it("invalid UTF-8 is a syntax error", () => {
    expect(() => parseManifest(new Uint8Array([0x76, 0xff, 0xfe]))).toThrow(/not UTF-8/);
  });
});
