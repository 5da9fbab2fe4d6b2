export {
  buildTrainingGraph,
  buildTrainingGraphWithInfo,
  gradName,
  promoteInitializers,
  type TrainingGraph,
  type TrainingGraphOptions,
} from "./backward";
export { GRADIENTS, NON_DIFFERENTIABLE } from "./gradients";
