{
  "targets": [
    {
      "target_name": "mkor_mpi",
      "sources": ["mkor_mpi.c"],
      "defines": ["NAPI_VERSION=8", "OMPI_SKIP_MPICXX=1"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "<!@(node mpi-flags.mjs cflags)"],
      "libraries": ["<!@(node mpi-flags.mjs libs)", "-lpthread"]
    }
  ]
}
