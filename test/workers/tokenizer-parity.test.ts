// The gateway tokenizes in workerd with the same library and tokenizer.json the trainer uses in Node; the ids
// must be identical or a model trained in Node would be served different inputs. The expected ids were
// produced in Node (test/node/data-tokenizer.test.ts checks that the fixture still matches Node).
import { describe, expect, it } from "vitest";
import tokenizerJson from "../../models/tokenizer.json";
import { encodeBatch, encodeText, loadTokenizer, type TokenizerJson } from "../../src/core/tokenizer";
import fixture from "../fixtures/tokenizer-parity.json";
import xlmrReference from "../fixtures/unigram/xlmr/reference.json";
import xlmrJson from "../fixtures/unigram/xlmr/tokenizer.json";

const tok = loadTokenizer(tokenizerJson as TokenizerJson);

describe("tokenizer parity, Node vs workerd", () => {
  it("runs inside workerd (no fs, no eval) with the committed tokenizer", () => {
    const { navigator } = globalThis as { navigator?: { userAgent?: string } };
    expect(navigator?.userAgent).toBe("Cloudflare-Workers");
    expect(tok.vocabSize).toBe(4096);
  });

  it("gives the ids Node gave for every fixture text", () => {
    expect(fixture.cases.length).toBeGreaterThan(30);
    for (const { text, ids } of fixture.cases)
      expect(encodeText(tok, text, fixture.maxLen), text).toEqual(ids);
  });

  it("builds the same padded batch", () => {
    const batch = encodeBatch(
      tok,
      fixture.cases.map((c) => c.text),
      fixture.maxLen,
    );
    const seqLen = Math.max(...fixture.cases.map((c) => c.ids.length));
    expect(batch.seqLen).toBe(seqLen);
    fixture.cases.forEach(({ ids }, b) => {
      const row = Array.from(batch.inputIds.slice(b * seqLen, (b + 1) * seqLen), Number);
      const mask = Array.from(batch.attentionMask.slice(b * seqLen, (b + 1) * seqLen), Number);
      expect(row).toEqual([...ids, ...Array(seqLen - ids.length).fill(tok.specialIds.pad)]);
      expect(mask).toEqual([...ids.map(() => 1), ...Array(seqLen - ids.length).fill(0)]);
    });
  });

  // A SentencePiece Unigram file: its Precompiled charsmap is read with atob and walked by Intl.Segmenter
  // graphemes (src/core/precompiled-charsmap.ts), both of which must behave in workerd as in Node. The ids are
  // sentencepiece's own (scripts/fixtures/unigram_tokenizers.py), as test/node/tokenizer-unigram.test.ts checks.
  it("gives sentencepiece's ids for an XLM-R-style Unigram tokenizer.json", () => {
    const unigram = loadTokenizer(xlmrJson as unknown as TokenizerJson);
    expect(xlmrReference.cases.length).toBeGreaterThan(15);
    for (const { text, ids, ...rest } of xlmrReference.cases as {
      text: string;
      ids: number[];
      maxLen?: number;
    }[])
      expect(encodeText(unigram, text, rest.maxLen ?? 512), JSON.stringify(text)).toEqual(ids);
  });
});
