import type { IoSignature, TensorDatatype } from "../manifest";
import type { Graph } from "./graph";
import { OIP_DATATYPE } from "./tensor";

/** The model's inputs/outputs as the manifest and the registry describe them (-1 for dynamic axes). */
export function ioSignatureOf(graph: Graph): IoSignature {
  const spec = (v: Graph["inputs"][number]) => ({
    name: v.name,
    datatype: OIP_DATATYPE[v.dtype] as TensorDatatype,
    shape: (v.shape ?? []).map((d) => (typeof d === "number" ? d : -1)),
  });
  return { inputs: graph.inputs.map(spec), outputs: graph.outputs.map(spec) };
}
