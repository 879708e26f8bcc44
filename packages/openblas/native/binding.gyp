{
  "targets": [
    {
      "target_name": "mkor_openblas",
      "sources": ["mkor_openblas.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "<!@(node openblas-flags.mjs cflags)"],
      "libraries": ["<!@(node openblas-flags.mjs libs)"]
    }
  ]
}
