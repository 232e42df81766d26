// The package as an app uses it: the API for its own UI, the element for a ready-made one.
import { Anote } from 'anote-ner';
import pii from 'anote-ner/presets/pii.json' with { type: 'json' };

// Two threads: the threaded build, its helper workers found from the package's own URLs.
window.extractEmail = async (text) => {
  const anote = new Anote({ threads: 2 });
  const info = await anote.load();
  return { adapter: info.adapter, threads: info.threads, entities: (await anote.extract(text, pii)).entities };
};
