-- netspec in Neovim (0.10 or later): put this file in ~/.config/nvim/plugin/ (or paste it into init.lua).
-- .net files get the netspec filetype, `#` comments, and `netspec lsp` as their language server:
-- diagnostics as `netspec check` gives them, K for hover (shape, parameters, description),
-- <C-x><C-o> completion, gd for go to definition, gq / vim.lsp.buf.format() for `netspec fmt`,
-- and inlay hints with each layer's output shape.
vim.filetype.add({ extension = { net = "netspec" } })

vim.api.nvim_create_autocmd("FileType", {
  pattern = "netspec",
  callback = function(args)
    vim.bo[args.buf].commentstring = "# %s"
    local root = vim.fs.root(args.buf, { ".git", "pyproject.toml" }) or vim.fn.getcwd()
    vim.lsp.start({
      name = "netspec",
      cmd = { "netspec", "lsp" },
      root_dir = root,
    }, { bufnr = args.buf })
  end,
})

vim.api.nvim_create_autocmd("LspAttach", {
  callback = function(args)
    local client = vim.lsp.get_client_by_id(args.data.client_id)
    if client and client.name == "netspec" then
      vim.bo[args.buf].omnifunc = "v:lua.vim.lsp.omnifunc"
      vim.lsp.inlay_hint.enable(true, { bufnr = args.buf })
    end
  end,
})
