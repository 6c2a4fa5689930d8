"""``python -m proxy.echo``: the older name of ``python -m grpc_proxy_demo.echo``,
the echo backend (grpc_proxy_demo/echo.py; needs the demo extra). Importing
this module does nothing."""

if __name__ == "__main__":
    import sys

    from grpc_proxy_demo import command

    sys.exit(command("echo", sys.argv[1:], module="grpc_proxy_demo.echo"))
