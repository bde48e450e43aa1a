"""Controller-runtime-style machinery with no Falco knowledge: client, informers, work queue, controllers, manager."""
