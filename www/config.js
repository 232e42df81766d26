// Names the page, the widget and the engine worker share: where the default model is, and
// what the browser keeps under which name (README, "What is stored, and where").

// The model the page and the widget load unless told another, relative to this folder.
export const DEFAULT_MODEL_PATH = 'models/gemma-3-270m-q4_k_m.gguf';
// Origin private file system: the downloaded model and adapter files.
export const MODEL_DIR = 'anote-models-v1';
// Origin private file system: the caches of the newest schema prompts read (no text of the
// user's: the keys and values the model made of the schema), one file per prompt key.
export const PROMPT_DIR = 'anote-prompts-v1';
// localStorage: the schema being edited, and the key of the keyed redaction operators.
export const SCHEMA_STORE = 'anote-schema-v1';
export const KEY_STORE = 'anote-key-v1';
