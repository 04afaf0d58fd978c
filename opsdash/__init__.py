"""The ``opsdash`` command and what runs the parts together: configuration, the demo, the
simulator of the platform's services, private servers, and opsdash reporting on itself."""
