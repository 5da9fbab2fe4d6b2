/** The data layer's public face for the trainer: tasks, the pretraining corpus and the committed tokenizer. */
export { corpusSegments, loadPretrainingCorpus, type PretrainingCorpus } from "./corpus";
export { DataFileError } from "./jsonl";
export { normalizeText, splitOf } from "./splits";
export { BUILTIN_TASKS, loadDataFile, loadTask, resolveTask } from "./tasks";
export {
  checkTokenizerFitsModel,
  DEFAULT_TOKENIZER_PATH,
  EMBEDDING_PADDING_LIMIT,
  loadTokenizerFile,
} from "./tokenizer-file";
export type { Example, SplitName, TaskDataset } from "./types";
