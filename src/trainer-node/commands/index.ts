// One line per command; each module exports `command: Command`.
import { registerCommand } from "../cli";

void registerCommand;
registerCommand("data", () => import("./data"));
registerCommand("push", () => import("./push"));
registerCommand("ls", () => import("./ls"));
registerCommand("train", () => import("./train"));
registerCommand("export", () => import("./export"));
registerCommand("base", () => import("./base"));
registerCommand("pretrain", () => import("./pretrain"));
