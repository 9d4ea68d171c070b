// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title Sonar2017 — gas baseline: the storage layout of OpenMined's 2017 Sonar contract
/// @notice A minimal re-implementation, for gas comparison only (scripts/gas_table.py), of the
/// `ModelRepository` contract of OpenMined's 2017 Sonar proof of concept (Solidity 0.4). It keeps
/// that contract's data layout and flow, which is what its gas cost comes from:
///   * an IPFS hash (a base58 multihash, "Qm…", 46 characters) stored as two `bytes32` words;
///   * one global `Gradient[]` array for all models, one 7-slot struct per submitted gradient
///     (evaluated flag + sender, gradient hash, model id, new error, new weights hash), written in
///     full (zeros included) when the gradient is added;
///   * one global `Model[]` array (owner, initial weights hash, weights hash, bounty, initial, best
///     and target error);
///   * one shared contract balance: bounties are not escrowed per model, and `evalGradient` sends
///     the incentive `(best − new) × bounty / best` straight to the miner, from whatever the
///     contract holds.
/// Differences from the original, none of which changes the storage written: Solidity 0.8
/// (checked arithmetic), fixed-size `bytes32[2]` arguments instead of `bytes32[]`, reverts instead
/// of a silent no-op for a foreign or repeated evaluation, and the model updated through a storage
/// reference (as the 0.4 code did implicitly). There is no commit–reveal, no stake, no deadline and
/// no way to take an unused bounty back — the gaps the current {Sonar} contract closes.
contract Sonar2017 {
    /// @notice An IPFS multihash split over two words (the original `IPFS` struct).
    struct IPFS {
        bytes32 first;
        bytes32 second;
    }

    /// @notice A submitted gradient and, once evaluated, the model it produced.
    struct Gradient {
        bool evaluated;
        address from; // the miner
        IPFS grads; // the gradient's IPFS hash
        uint256 modelId;
        uint256 newModelError; // set by the model owner's evaluation
        IPFS newWeights; // the new model's IPFS hash, set by the evaluation
    }

    /// @notice A model put up for training.
    struct Model {
        address owner;
        IPFS initWeights;
        IPFS weights;
        uint256 bounty;
        uint256 initialError;
        uint256 bestError;
        uint256 targetError;
    }

    Model[] internal models;
    Gradient[] internal grads;

    /// @notice Post a model with its bounty (msg.value) and initial and target error.
    /// @return modelId the new model's index.
    function addModel(bytes32[2] calldata weights, uint256 initialError, uint256 targetError)
        external
        payable
        returns (uint256 modelId)
    {
        IPFS memory w = IPFS(weights[0], weights[1]);
        models.push(Model(msg.sender, w, w, msg.value, initialError, initialError, targetError));
        return models.length - 1;
    }

    /// @notice Submit a gradient (its IPFS hash) for a model.
    /// @return gradientId the gradient's index in the global array.
    function addGradient(uint256 modelId, bytes32[2] calldata ipfsHash) external returns (uint256 gradientId) {
        require(modelId < models.length, "unknown model");
        grads.push(
            Gradient({
                evaluated: false,
                from: msg.sender,
                grads: IPFS(ipfsHash[0], ipfsHash[1]),
                modelId: modelId,
                newModelError: 0,
                newWeights: IPFS(0, 0)
            })
        );
        return grads.length - 1;
    }

    /// @notice The model owner records the error of the model with the gradient applied and the
    /// new weights' IPFS hash; if the error improved, the miner is sent
    /// `(best − new) × bounty / best` from the shared balance and the model's weights advance.
    function evalGradient(uint256 gradientId, bytes32[2] calldata newModelHash, uint256 newModelError) external {
        Gradient storage g = grads[gradientId];
        Model storage m = models[g.modelId];
        require(!g.evaluated && msg.sender == m.owner, "not evaluable");
        g.newWeights = IPFS(newModelHash[0], newModelHash[1]);
        g.newModelError = newModelError;
        if (newModelError < m.bestError) {
            uint256 incentive = (m.bestError - newModelError) * m.bounty / m.bestError;
            m.bestError = newModelError;
            m.weights = g.newWeights;
            require(payable(g.from).send(incentive), "send failed");
        }
        g.evaluated = true;
    }

    /// @notice Number of models posted.
    function getNumModels() external view returns (uint256) {
        return models.length;
    }

    /// @notice A gradient: sender, gradient hash, model id, new error, new weights hash.
    function getGradient(uint256 gradientId)
        external
        view
        returns (address from, bytes32[2] memory gradHash, uint256 modelId, uint256 newError, bytes32[2] memory newWeights)
    {
        Gradient storage g = grads[gradientId];
        return (
            g.from,
            [g.grads.first, g.grads.second],
            g.modelId,
            g.newModelError,
            [g.newWeights.first, g.newWeights.second]
        );
    }

    /// @notice A model: owner, bounty, initial, target and best error, weights hash.
    function getModel(uint256 modelId)
        external
        view
        returns (address owner, uint256 bounty, uint256 initialError, uint256 targetError, uint256 bestError, bytes32[2] memory weights)
    {
        Model storage m = models[modelId];
        return (m.owner, m.bounty, m.initialError, m.targetError, m.bestError, [m.weights.first, m.weights.second]);
    }
}
