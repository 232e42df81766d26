// As the package README says: the engine's worker is an ES module.
export default {
  base: './',
  worker: { format: 'es' },
  optimizeDeps: { exclude: ['anote-ner'] },
};
