/**
 * Under vitest-pool-workers, protobufjs finds `Buffer` (nodejs_compat) and encodes long strings with
 * `Buffer.prototype.utf8Write(str, offset)`, whose default length in workerd is the whole buffer rather than
 * what is left after `offset`, so encoding any model with a name over 40 characters throws a RangeError.
 * (A wrangler bundle never finds Buffer this way, and the gateway only decodes.) Tests that build models in
 * workerd import this first: it switches protobufjs to its plain Uint8Array writer.
 */
import protobuf from "protobufjs/minimal";

(protobuf.util as { Buffer: unknown }).Buffer = null;
protobuf.configure();
