// The netspec VS Code client: starts `netspec lsp` (stdio) for .net files.
const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const config = vscode.workspace.getConfiguration("netspec");
  const command = config.get("server.command", "netspec");
  const args = config.get("server.args", ["lsp"]);
  // TransportKind.stdio: the client talks over the server's stdin/stdout (and adds --stdio)
  const run = { command, args, transport: TransportKind.stdio };
  client = new LanguageClient(
    "netspec",
    "netspec",
    { run, debug: run },
    { documentSelector: [{ scheme: "file", language: "netspec" }, { scheme: "untitled", language: "netspec" }] }
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
