// The package as an app uses it: the API for its own UI, the element for a ready-made one.
import { Anote } from 'anote-ner';
import pii from 'anote-ner/presets/pii.json' with { type: 'json' };

window.extractEmail = async (text) => {
  const anote = new Anote();
  const info = await anote.load();
  return { adapter: info.adapter, entities: (await anote.extract(text, pii)).entities };
};
