export * from "./codec";
export * from "./graph";
export * from "./signature";
export * from "./tensor";
