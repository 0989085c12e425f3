#!/bin/sh
# The image's entry point, the same for Docker/podman (ENTRYPOINT) and Apptainer (%runscript):
#   IMAGE train --task mnist ...   -> samedge train --task mnist ...   (a samedge command)
#   IMAGE python3 -c ...           -> python3 -c ...                    (any program in the image)
#   IMAGE                          -> samedge --help
# Host Python settings (Apptainer passes the host environment in; `docker run -e` can too) must
# not shadow the image's own Python, so they are dropped before anything runs.
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV
if [ $# -eq 0 ]; then
  set -- --help
fi
case "$1" in
  -*) exec samedge "$@" ;;
esac
if command -v "$1" > /dev/null 2>&1; then
  exec "$@"
fi
exec samedge "$@"
