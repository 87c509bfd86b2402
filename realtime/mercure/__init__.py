"""The Mercure hub front door (issue 14), beside ``/events``, ``/publish`` and ``/ws``.

Built in layers like the rest: what is pure about Mercure (its topic selectors, its token
shapes, its update forms) is table-tested against both published drafts
(``../shared/reference/mercure``); the door at ``/.well-known/mercure`` sits on top of them and
of the same storage and fan-out as every other door:

- :mod:`realtime.mercure.views`: subscribe, publish and the subscriptions API (Flask), with
  the spec's Bearer challenges on the JSON error contract;
- :mod:`realtime.mercure.stream`: one subscriber's stream, where it resumes, the replay and
  live, each update selected by :class:`~realtime.mercure.stream.Reader`;
- :mod:`realtime.mercure.active`: what a connection announces in presence, and the
  subscription events.

- :mod:`realtime.mercure.selectors`: ``topic`` (draft 07: ``*``, exact, URI Template),
  ``match`` / ``match_exact`` and ``match_urlpattern`` (draft 08).
- :mod:`realtime.mercure.updates`: a publish form into a checked :class:`Update` (topics and
  alternates, data, private, the publisher's id, type, retry).
- :mod:`realtime.mercure.tokens`: what a token grants (draft 07's ``mercure`` claim, draft
  08's ``at+jwt`` with ``authorization_details``) and where a request carries it.
- :mod:`realtime.mercure.subscriptions`: subscription documents, event topics, collections
  and API paths, in the shape of the draft each client speaks.
- :mod:`realtime.mercure.store`: an update as one event on a storage topic no other door can
  name (its id as the event's alias, its topics and privacy as attributes), and back.
- :mod:`realtime.mercure.text`: the character rule every Mercure identifier shares.
"""
