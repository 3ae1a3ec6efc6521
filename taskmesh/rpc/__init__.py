"""gRPC plumbing shared by the servers: the guard interceptor, error mapping, server building."""
