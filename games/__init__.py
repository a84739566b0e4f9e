"""The real games: ALE Atari, the Maze, FetchPick, their scripted experts and the recorded-episode
store. Training and serving both stand on this layer; it imports nothing else of the project
(docs/design.md §7)."""
